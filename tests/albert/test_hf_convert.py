"""Hugging Face interoperability: albert.export_hf / albert.import_hf.

Upstream's own checkpoint (golden) exported and run by transformers must
give upstream's stored outputs; an HF-initialised model imported and run by
this project's graph must give transformers' MLM loss; both round trips are
bit-exact; the exported tokenizer files cut text as this project does
except for the documented digit-comma pieces.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import export_hf
from albert import hf_convert
from albert import import_hf
from albert import modeling
from albert import run_pretraining
from albert import tokenization

torch = pytest.importorskip(
    "torch", reason="torch not installed (pip install '.[hf]')")
transformers = pytest.importorskip(
    "transformers", reason="transformers not installed (pip install '.[hf]')")
safetensors_numpy = pytest.importorskip(
    "safetensors.numpy", reason="safetensors not installed")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOL = 1e-4


def _golden_options(golden_dir, output_dir, spm_model_file=None, **kw):
  model_dir = os.path.join(golden_dir, "model")
  return export_hf.ExportOptions(
      checkpoint=os.path.join(model_dir, "model.ckpt-1"),
      albert_config_file=os.path.join(model_dir, "albert_config.json"),
      spm_model_file=spm_model_file or os.path.join(model_dir, "spm.model"),
      output_dir=output_dir, **kw)


@pytest.fixture(scope="module")
def golden_export(golden_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("hf") / "golden")
  assert export_hf.export(_golden_options(golden_dir, out)) == \
      hf_convert.PRETRAINING
  return out


def _torch_inputs(inputs):
  return {"input_ids": torch.tensor(inputs["input_ids"], dtype=torch.long),
          "attention_mask": torch.tensor(inputs["input_mask"],
                                         dtype=torch.long),
          "token_type_ids": torch.tensor(inputs["segment_ids"],
                                         dtype=torch.long)}


def test_golden_outputs_through_transformers(golden_export, golden_dir):
  inputs = np.load(os.path.join(golden_dir, "model", "inputs.npz"))
  want = np.load(os.path.join(golden_dir, "model", "outputs.npz"))
  model = transformers.AlbertForPreTraining.from_pretrained(golden_export)
  model.eval()
  assert model.config.hidden_act == "gelu_new"
  with torch.no_grad():
    base = model.albert(**_torch_inputs(inputs))
    heads = model(**_torch_inputs(inputs))
  np.testing.assert_allclose(base.last_hidden_state.numpy(),
                             want["sequence_output"], atol=TOL)
  np.testing.assert_allclose(base.pooler_output.numpy(),
                             want["pooled_output"], atol=TOL)
  log_probs = torch.log_softmax(heads.prediction_logits, -1).numpy()
  positions = inputs["masked_lm_positions"]
  mlm = np.stack([log_probs[i, positions[i]] for i in range(len(positions))])
  np.testing.assert_allclose(
      mlm, want["masked_lm_log_probs"].reshape(mlm.shape), atol=TOL)
  sop = torch.log_softmax(heads.sop_logits, -1).numpy()
  np.testing.assert_allclose(sop, want["sentence_order_log_probs"], atol=TOL)


def test_golden_export_files_and_card(golden_export):
  assert sorted(os.listdir(golden_export)) == sorted(export_hf.OUTPUT_FILES)
  config = json.load(open(os.path.join(golden_export, "config.json")))
  assert config["architectures"] == ["AlbertForPreTraining"]
  assert (config["num_hidden_groups"], config["inner_group_num"]) == (2, 2)
  tok = json.load(open(os.path.join(golden_export, "tokenizer_config.json")))
  assert tok["do_lower_case"] is True and tok["keep_accents"] is False
  card = open(os.path.join(golden_export, "README.md")).read()
  assert "AlbertForPreTraining" in card and "global step 1" in card
  # Training state is not exported.
  keys = safetensors_numpy.load_file(
      os.path.join(golden_export, "model.safetensors"))
  assert not [k for k in keys if "adam" in k or "global_step" in k]


def _checkpoint_arrays(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if not hf_convert.is_training_state(n)}


def test_golden_export_import_round_trip_is_bit_exact(golden_export,
                                                      golden_dir, tmp_path):
  out = str(tmp_path / "tf")
  import_hf.import_hf(golden_export, out)
  got = _checkpoint_arrays(os.path.join(out, import_hf.CHECKPOINT_NAME))
  want = _checkpoint_arrays(os.path.join(golden_dir, "model", "model.ckpt-1"))
  assert sorted(got) == sorted(want)
  for name in want:
    assert got[name].dtype == want[name].dtype
    assert np.array_equal(got[name], want[name]), name
  config = json.load(open(os.path.join(out, import_hf.CONFIG_FILE)))
  golden_config = json.load(open(os.path.join(golden_dir, "model",
                                              "albert_config.json")))
  assert config == golden_config
  assert os.path.exists(os.path.join(out, "spm_record.json"))


SMALL = dict(vocab_size=2000, embedding_size=16, hidden_size=32,
             num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2,
             num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40, hidden_act="gelu_new",
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def hf_mlm_dir(golden_dir, tmp_path_factory):
  """A random (HF-initialised) AlbertForMaskedLM saved by transformers."""
  torch.manual_seed(0)
  model = transformers.AlbertForMaskedLM(transformers.AlbertConfig(**SMALL))
  out = str(tmp_path_factory.mktemp("hf_mlm"))
  model.save_pretrained(out)
  shutil.copy(os.path.join(golden_dir, "tokenization", "spm.model"),
              os.path.join(out, "spiece.model"))
  return out


def _our_mlm_loss(tf_dir, ids, mask, positions, labels):
  config = modeling.AlbertConfig.from_json_file(
      os.path.join(tf_dir, import_hf.CONFIG_FILE))
  prefix = os.path.join(tf_dir, import_hf.CHECKPOINT_NAME)
  stored = set(tf.train.load_checkpoint(prefix).get_variable_to_shape_map())
  with tf.Graph().as_default():
    model = modeling.AlbertModel(config, False, tf.constant(ids),
                                 tf.constant(mask))
    loss, _, _ = run_pretraining.get_masked_lm_output(
        config, model.get_sequence_output(), model.get_embedding_table(),
        tf.constant(positions), tf.constant(labels),
        tf.ones(positions.shape, tf.float32))
    restore = [v for v in tf.global_variables() if v.op.name in stored]
    # Everything the MLM loss needs comes from the checkpoint (the pooler,
    # absent from AlbertForMaskedLM, does not enter the loss).
    assert {v.op.name for v in restore} == stored
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      tf.train.Saver(restore).restore(sess, prefix)
      return float(sess.run(loss))


def test_import_hf_mlm_loss_matches_transformers(hf_mlm_dir, tmp_path):
  out = str(tmp_path / "tf")
  names = import_hf.import_hf(hf_mlm_dir, out)
  assert "bert/pooler/dense/kernel" not in names
  assert "cls/predictions/output_bias" in names
  rng = np.random.RandomState(1)
  ids = rng.randint(5, SMALL["vocab_size"], size=(3, 24)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 17:] = 0
  positions = np.array([[1, 4, 9, 12], [2, 3, 8, 16], [5, 6, 20, 23]],
                       np.int32)
  labels = rng.randint(5, SMALL["vocab_size"], size=positions.shape
                       ).astype(np.int32)
  ours = _our_mlm_loss(out, ids, mask, positions, labels)
  hf_labels = np.full(ids.shape, -100, np.int64)
  for row in range(len(ids)):
    hf_labels[row, positions[row]] = labels[row]
  model = transformers.AlbertForMaskedLM.from_pretrained(hf_mlm_dir).eval()
  with torch.no_grad():
    theirs = model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor(mask, dtype=torch.long),
                   labels=torch.tensor(hf_labels)).loss.item()
  assert ours == pytest.approx(theirs, abs=TOL)
  assert theirs > 5.0  # a random model: the loss is near log(vocab)


def test_import_export_round_trip_is_bit_exact(hf_mlm_dir, tmp_path):
  tf_dir = str(tmp_path / "tf")
  import_hf.import_hf(hf_mlm_dir, tf_dir)
  out = str(tmp_path / "hf")
  head = export_hf.export(export_hf.ExportOptions(
      checkpoint=os.path.join(tf_dir, import_hf.CHECKPOINT_NAME),
      albert_config_file=os.path.join(tf_dir, import_hf.CONFIG_FILE),
      spm_model_file=os.path.join(tf_dir, "spiece.model"), output_dir=out))
  assert head == hf_convert.MASKED_LM
  want = safetensors_numpy.load_file(os.path.join(hf_mlm_dir,
                                                  "model.safetensors"))
  got = safetensors_numpy.load_file(os.path.join(out, "model.safetensors"))
  want = {k: v for k, v in want.items() if not k.startswith(
      "predictions.decoder.")}  # tied to the embeddings / predictions.bias
  assert sorted(got) == sorted(want)
  for key in want:
    assert got[key].dtype == want[key].dtype
    assert np.array_equal(got[key], want[key]), key
  assert (open(os.path.join(out, "spiece.model"), "rb").read() ==
          open(os.path.join(hf_mlm_dir, "spiece.model"), "rb").read())


def test_import_refuses_what_the_graph_cannot_run(hf_mlm_dir, tmp_path):
  bad = tmp_path / "bad"
  shutil.copytree(hf_mlm_dir, bad)
  config = json.load(open(bad / "config.json"))
  for change, message in ((("hidden_act", "gelu"), "hidden_act 'gelu'"),
                          (("position_embedding_type", "relative_key"),
                           "position_embedding_type")):
    (bad / "config.json").write_text(json.dumps(dict(config, **dict(
        [change]))))
    with pytest.raises(hf_convert.HfConvertError, match=message):
      import_hf.import_hf(str(bad), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
  # embedding_size == hidden_size with a real (non-identity) projection.
  torch.manual_seed(0)
  same = transformers.AlbertForMaskedLM(transformers.AlbertConfig(
      **dict(SMALL, embedding_size=32)))
  same.save_pretrained(str(tmp_path / "same"))
  shutil.copy(os.path.join(hf_mlm_dir, "spiece.model"),
              str(tmp_path / "same" / "spiece.model"))
  with pytest.raises(hf_convert.HfConvertError, match="not the identity"):
    import_hf.import_hf(str(tmp_path / "same"), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layers,groups,ok", [(4, 2, True), (12, 1, True),
                                              (12, 5, True), (3, 4, False)])
def test_group_sharing_matches_or_is_refused(layers, groups, ok):
  config = dict(SMALL, num_hidden_layers=layers, num_hidden_groups=groups,
                hidden_act="gelu")
  if ok:
    hf_convert.check_expressible(config)
    assert ([hf_convert.tf_group_of_layer(l, config) for l in range(layers)]
            == [hf_convert.hf_group_of_layer(l, config)
                for l in range(layers)])
  else:
    with pytest.raises(hf_convert.HfConvertError, match="num_hidden_groups"):
      hf_convert.check_expressible(config)


def _start_cli(module, *args):
  return subprocess.Popen([sys.executable, "-m", module, *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT)


def _finish(proc):
  out, err = proc.communicate(timeout=300)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_cli_refuses_non_empty_output_and_bad_input(golden_dir, tmp_path):
  model_dir = os.path.join(golden_dir, "model")
  # Two non-empty output directories, so that the three runs can go at once
  # (each is mostly an interpreter and TensorFlow start-up).
  out, replaced = tmp_path / "out", tmp_path / "replaced"
  for directory in (out, replaced):
    directory.mkdir()
    (directory / "mine.txt").write_text("user data")
  args = ["--init_checkpoint=" + os.path.join(model_dir, "model.ckpt-1"),
          "--albert_config_file=" + os.path.join(model_dir,
                                                 "albert_config.json"),
          "--spm_model_file=" + os.path.join(model_dir, "spm.model")]
  refused = _start_cli("albert.export_hf", *args, "--output_dir=%s" % out)
  overwrite = _start_cli("albert.export_hf", *args,
                         "--output_dir=%s" % replaced, "--overwrite",
                         "--head=encoder")
  missing = _start_cli("albert.import_hf",
                       "--hf_dir=%s" % (tmp_path / "missing"),
                       "--output_dir=%s" % (tmp_path / "tf"))
  proc = _finish(refused)
  assert proc.returncode == 1 and "is not empty" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert os.listdir(out) == ["mine.txt"]
  proc = _finish(overwrite)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (replaced / "mine.txt").read_text() == "user data"
  config = json.load(open(replaced / "config.json"))
  assert config["architectures"] == ["AlbertModel"]
  transformers.AlbertModel.from_pretrained(str(replaced))

  proc = _finish(missing)
  assert proc.returncode == 1 and "does not exist" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "tf").exists()


def _our_pieces(spm_file, sentence, corrected=None):
  kw = {} if corrected is None else {"corrected_digit_comma": corrected}
  tokenizer = tokenization.FullTokenizer(None, do_lower_case=True,
                                         spm_model_file=spm_file, **kw)
  return tokenizer.tokenize(tokenization.preprocess_text(sentence,
                                                         lower=True))


def _same_text(ours, theirs):
  return "".join(ours).replace("\u2581", "") == \
      "".join(theirs).replace("\u2581", "")


def test_exported_tokenizer_matches_ours(golden_dir, tmp_path):
  spm_file = os.path.join(golden_dir, "tokenization", "spm.model")
  out = str(tmp_path / "tok")
  export_hf.export(_golden_options(golden_dir, out, spm_model_file=spm_file))
  sentences = open(os.path.join(golden_dir, "tokenization",
                                "sentences.txt")).read().splitlines()
  slow = transformers.AlbertTokenizer.from_pretrained(out)
  fast = transformers.AutoTokenizer.from_pretrained(out)
  assert fast.is_fast
  differ, fast_differ = [], []
  for sentence in sentences:
    want = _our_pieces(spm_file, sentence)  # this project's default rule
    hf = slow.tokenize(sentence)
    # HF's AlbertTokenizer applies the digit-comma rule as corrected here.
    assert hf == _our_pieces(spm_file, sentence, corrected=True), sentence
    if hf != want:
      assert _same_text(want, hf) and "," in sentence, sentence
      differ.append(sentence)
    # The fast tokenizer (HF's own conversion, tokenizer.json) only
    # approximates the rule by penalising digit-comma pieces.
    if fast.tokenize(sentence) != hf:
      assert _same_text(fast.tokenize(sentence), hf) and "," in sentence
      fast_differ.append(sentence)
  default = tokenization.FullTokenizer(None, spm_model_file=spm_file)
  if not default.corrected_digit_comma:
    assert differ
  else:
    assert differ == []
  assert len(fast_differ) < len(sentences) // 4
