"""run_ner.py end to end on a slice of NCBI-disease, the model_fn, bad input.

The end-to-end run (tiny config, SentencePiece trained here, random encoder
checkpoint, 200 steps, checkpoints at 100 and 200) runs once in a
subprocess; several tests read its outputs.
"""
import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from seqeval import metrics as seqeval_metrics
from seqeval.scheme import IOB2

from tests.bio.tiny_ner import read_blocks
from tests.bio.tiny_ner import read_predictions
from tests.bio.tiny_ner import write_blocks

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TINY_CONFIG = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
SLICE = {"train.tsv": 200, "devel.tsv": 100, "test.tsv": 100}
MAX_SEQ = 64
RESULT_FILES = ("label_map.json", "dev_results.txt", "test_results.txt",
                "test_predictions.txt", "best_checkpoint.txt",
                "run_config.json")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
  return tmp_path_factory.mktemp("run_ner")


@pytest.fixture(scope="module")
def ncbi_slice(ner_dir, work):
  """200/100/100 sentences of NCBI-disease in a data directory of our own."""
  src = os.path.join(ner_dir, "NCBI-disease")
  out = work / "ncbi_slice"
  out.mkdir()
  for name, n in SLICE.items():
    write_blocks(str(out / name), read_blocks(os.path.join(src, name))[:n])
  return str(out)


@pytest.fixture(scope="module")
def tiny_config():
  from albert import modeling  # pylint: disable=g-import-not-at-top
  return modeling.AlbertConfig.from_json_file(TINY_CONFIG)


@pytest.fixture(scope="module")
def spm_model(ner_dir, work, tiny_config):
  from albert import train_spm  # pylint: disable=g-import-not-at-top
  blocks = read_blocks(os.path.join(ner_dir, "NCBI-disease", "train.tsv"))
  return train_spm.train_sentencepiece_from_texts(
      [" ".join(tokens) for tokens, _ in blocks], str(work / "spm"),
      vocab_size=min(1000, tiny_config.vocab_size))


@pytest.fixture(scope="module")
def encoder_ckpt(work, tiny_config):
  """A randomly initialised tiny encoder saved as a checkpoint (bert/ only)."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from albert import modeling  # pylint: disable=g-import-not-at-top
  path = str(work / "encoder" / "model.ckpt")
  with tf.Graph().as_default():
    ids = tf.zeros([1, 8], dtype=tf.int32)
    modeling.AlbertModel(tiny_config, False, ids)
    saver = tf.train.Saver(tf.global_variables())
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      return saver.save(sess, path)


def run_ner_cli(args, timeout=600):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "run_ner.py")] + args, cwd=ROOT,
      capture_output=True, text=True, timeout=timeout)


def _train_tiny(out, ncbi_slice, spm_model, encoder_ckpt, *extra):
  """run_ner.py: 200 steps, dev at 100 and 200, then test."""
  proc = run_ner_cli([
      "--data_dir=" + ncbi_slice, "--albert_config_file=" + TINY_CONFIG,
      "--spm_model_file=" + spm_model, "--init_checkpoint=" + encoder_ckpt,
      "--output_dir=" + out, "--do_train", "--do_eval", "--do_predict",
      "--max_seq_length=%d" % MAX_SEQ, "--train_batch_size=16",
      "--eval_batch_size=16", "--predict_batch_size=8", "--train_step=200",
      "--warmup_step=10", "--save_checkpoints_steps=100",
      "--learning_rate=1e-3", *extra])
  assert proc.returncode == 0, proc.stderr[-5000:]
  return types.SimpleNamespace(out=out, log=proc.stderr, data=ncbi_slice)


@pytest.fixture(scope="module")
def e2e(work, ncbi_slice, spm_model, encoder_ckpt):
  return _train_tiny(str(work / "out"), ncbi_slice, spm_model, encoder_ckpt)


def test_outputs_written(e2e):
  for name in RESULT_FILES + ("dev_results.json", "test_results.json"):
    assert os.path.isfile(os.path.join(e2e.out, name)), name
  leftovers = [n for n in os.listdir(e2e.out) if ".tmp-" in n]
  assert not leftovers
  with open(os.path.join(e2e.out, "label_map.json")) as f:
    assert json.load(f) == {"O": 0, "B-Disease": 1, "I-Disease": 2}
  with open(os.path.join(e2e.out, "run_config.json")) as f:
    config = json.load(f)
  assert config["albert_config_file"] == TINY_CONFIG
  assert os.path.isfile(config["spm_model_file"])
  assert config["max_seq_length"] == MAX_SEQ and config["do_lower_case"]
  assert config["label_list"] == ["O", "B-Disease", "I-Disease"]
  # The SentencePiece model is recorded beside the checkpoints and in best/.
  from albert import vocab_record  # pylint: disable=g-import-not-at-top
  for directory in (e2e.out, os.path.join(e2e.out, "best")):
    record = vocab_record.read(directory)
    assert record["sha256"] == vocab_record.sha256_file(
        config["spm_model_file"])


def test_every_test_token_predicted_in_order(e2e):
  gold = read_blocks(os.path.join(e2e.data, "test.tsv"))
  predicted = read_predictions(os.path.join(e2e.out, "test_predictions.txt"))
  assert len(predicted) == len(gold) == SLICE["test.tsv"]
  assert sum(map(len, predicted)) == sum(len(t) for t, _ in gold)
  for (tokens, labels), rows in zip(gold, predicted):
    assert [r[0] for r in rows] == tokens
    assert [r[1] for r in rows] == labels
    assert all(r[2] in ("O", "B-Disease", "I-Disease") for r in rows)
  # Some test sentences were longer than one window: windows were used.
  m = re.search(r"test: 100 sentences -> (\d+) features \((\d+) extra", e2e.log)
  assert m and int(m.group(2)) > 0


def test_reported_scores_equal_seqeval_on_predictions(e2e):
  rows = read_predictions(os.path.join(e2e.out, "test_predictions.txt"))
  y_true = [[r[1] for r in s] for s in rows]
  y_pred = [[r[2] for r in s] for s in rows]
  with open(os.path.join(e2e.out, "test_results.txt")) as f:
    text = f.read()
  expected = {
      "conlleval-compatible": {},
      "strict IOB2": {"mode": "strict", "scheme": IOB2},
  }
  for title, kwargs in expected.items():
    m = re.search(r"overall \(%s\): precision ([\d.]+) recall ([\d.]+) "
                  r"f1 ([\d.]+)" % re.escape(title), text)
    assert m, title
    p = seqeval_metrics.precision_score(y_true, y_pred, zero_division=0,
                                        **kwargs)
    r = seqeval_metrics.recall_score(y_true, y_pred, zero_division=0,
                                     **kwargs)
    f1 = seqeval_metrics.f1_score(y_true, y_pred, zero_division=0, **kwargs)
    # The file prints 4 decimals: compare with seqeval formatted the same way.
    assert m.groups() == tuple("%.4f" % v for v in (p, r, f1))
  with open(os.path.join(e2e.out, "test_results.json")) as f:
    payload = json.load(f)
  assert payload["conlleval_f1"] == pytest.approx(
      seqeval_metrics.f1_score(y_true, y_pred, zero_division=0), abs=1e-12)
  acc = np.mean([t == p for ts, ps in zip(y_true, y_pred)
                 for t, p in zip(ts, ps)])
  assert payload["token_accuracy"] == pytest.approx(acc, abs=1e-12)
  assert "token accuracy: %.4f" % acc in text


def test_exported_model_agrees_with_run_ner_predictions(e2e, tmp_path,
                                                        serve_texts):
  """bio.serving.export on this run, served from a process that imports only
  tensorflow and tensorflow_text, on the test sentences joined with spaces:
  its entities are those of run_ner.py's test_predictions.txt."""
  from seqeval.metrics.sequence_labeling import get_entities
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  export_dir = str(tmp_path / "export")
  # In this process: the command line's exit codes and errors are
  # tests/bio/serving/test_export.py's.
  export.export_ner(e2e.out, export_dir)
  rows = read_predictions(os.path.join(e2e.out, "test_predictions.txt"))
  texts, expected = [], []
  for sentence in rows:
    tokens = [r[0] for r in sentence]
    starts, pos = [], 0
    for token in tokens:
      starts.append(pos)
      pos += len(token) + 1
    texts.append(" ".join(tokens))
    expected.append([(starts[first], starts[last] + len(tokens[last]), etype)
                     for etype, first, last in
                     get_entities([r[2] for r in sentence])])
  served = serve_texts(export_dir, texts)
  assert served["leaked"] == []
  got = [[(s, e, t) for s, e, t, _, _ in ents] for ents in served["entities"]]
  same = sum(g == w for g, w in zip(got, expected))
  # Every sentence should agree; one may differ by a float near-tie between
  # the estimator's batches and the serving graph's.
  assert same >= len(texts) - 1, [(t, g, w) for t, g, w in
                                  zip(texts, got, expected) if g != w][:3]
  assert sum(map(len, expected)) > 0


def test_dev_results_list_every_checkpoint_and_the_choice(e2e):
  with open(os.path.join(e2e.out, "dev_results.txt")) as f:
    text = f.read()
  rows = re.findall(r"^(\d+)\s+model\.ckpt-(\d+)\s+([\d.]+)\s+([\d.]+)\s+"
                    r"([\d.]+)\s+[\d.]+\s+[\d.]+(  <- chosen)?$", text, re.M)
  assert [int(r[0]) for r in rows] == [100, 200]
  assert all(r[0] == r[1] for r in rows)
  chosen = [r for r in rows if r[5]]
  assert len(chosen) == 1
  f1s = [float(r[4]) for r in rows]
  assert float(chosen[0][4]) == max(f1s)
  step = int(chosen[0][0])
  assert "chosen: model.ckpt-%d" % step in text
  with open(os.path.join(e2e.out, "best_checkpoint.txt")) as f:
    best = f.read().strip()
  assert best == "best/model.ckpt-%d" % step
  assert os.path.isfile(os.path.join(e2e.out, best + ".index"))
  with open(os.path.join(e2e.out, "test_results.txt")) as f:
    assert "checkpoint: %s\n" % best in f.read()


def test_init_checkpoint_restores_encoder_and_not_classifier(e2e,
                                                             encoder_ckpt,
                                                             tiny_config):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  encoder_vars = dict(tf.train.list_variables(encoder_ckpt))
  bert = sorted(n for n in encoder_vars if n.startswith("bert/"))
  assert bert
  for name in bert:
    assert re.search(r"name = %s:0, shape = .*\*INIT_FROM_CKPT\*" %
                     re.escape(name), e2e.log), name
  assert "All %d encoder (bert/) variables restored" % len(bert) in e2e.log
  for name in ("ner/output_weights", "ner/output_bias"):
    assert name not in encoder_vars
    assert re.search(r"name = %s:0, .*\*FRESH\*" % name, e2e.log), name
  # The step-0 checkpoint holds the weights training started from.
  start = tf.train.load_checkpoint(os.path.join(e2e.out, "model.ckpt-0"))
  source = tf.train.load_checkpoint(encoder_ckpt)
  for name in bert:
    np.testing.assert_array_equal(start.get_tensor(name),
                                  source.get_tensor(name))
  assert not start.get_tensor("ner/output_bias").any()
  weights = start.get_tensor("ner/output_weights")
  assert weights.shape == (3, tiny_config.hidden_size)
  assert 0.005 < weights.std() < 0.03
  final = tf.train.load_checkpoint(os.path.join(e2e.out, "model.ckpt-200"))
  assert not np.array_equal(final.get_tensor(bert[0]),
                            source.get_tensor(bert[0]))


# ---------------------------------------------------------------------------
# model_fn, called directly


def _random_features(rng, batch, seq, num_labels, vocab):
  mask = np.ones((batch, seq), np.int32)
  mask[1, seq // 2:] = 0
  return {
      "input_ids": rng.randint(4, vocab, (batch, seq)).astype(np.int32),
      "input_mask": mask,
      "segment_ids": np.zeros((batch, seq), np.int32),
      "label_ids": rng.randint(0, num_labels, (batch, seq)).astype(np.int32),
      "label_mask": (rng.rand(batch, seq) < 0.5).astype(np.int32) * mask,
      "is_real_example": np.array([1] * (batch - 1) + [0], np.int32),
  }


def test_masked_token_loss_matches_numpy():
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from bio.ner import model as ner_model  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(1)
  logits = rng.randn(3, 5, 4).astype(np.float32)
  labels = rng.randint(0, 4, (3, 5)).astype(np.int32)
  label_mask = (rng.rand(3, 5) < 0.6).astype(np.int32)
  real = np.array([1, 1, 0], np.int32)
  weights = label_mask * real[:, None]
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
  expected = -(picked * weights).sum() / weights.sum()
  with tf.Graph().as_default(), tf.Session() as sess:
    w = ner_model.token_weights(tf.constant(label_mask), tf.constant(real))
    loss, _ = ner_model.masked_token_loss(tf.constant(logits),
                                          tf.constant(labels), w)
    got_w, got = sess.run([w, loss])
  np.testing.assert_array_equal(got_w, weights)
  assert got == pytest.approx(expected, rel=1e-5)


def test_model_fn_tpu_branch(tiny_config, encoder_ckpt, tmp_path):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from bio.ner import features as ner_features  # pylint: disable=g-import-not-at-top
  from bio.ner import model as ner_model  # pylint: disable=g-import-not-at-top
  batch, seq, num_labels = 4, 16, 3
  rng = np.random.RandomState(0)
  base = _random_features(rng, batch, seq, num_labels, tiny_config.vocab_size)
  model_fn = ner_model.model_fn_builder(
      tiny_config, num_labels, encoder_ckpt, 1e-3, 10, 2, use_tpu=True,
      use_one_hot_embeddings=True)
  params = {"batch_size": batch}

  # TRAIN: CrossShardOptimizer, and the restore deferred to scaffold_fn.
  with tf.Graph().as_default() as graph:
    feats = {k: tf.constant(v) for k, v in base.items()}
    spec = model_fn(feats, None, tf.estimator.ModeKeys.TRAIN, params)
    assert isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec)
    assert spec.train_op is not None and callable(spec.scaffold_fn)
    assert "CrossReplicaSum" in {op.type for op in graph.get_operations()}
    # (The graph holds TPU-only ops, so no CPU session can run it: check
    # which initializers read the checkpoint instead.)
    def source_op(tensor):
      while tensor.op.type == "Identity":
        tensor = tensor.op.inputs[0]
      return tensor.op.type

    def restored():
      return {v.op.name for v in tf.global_variables()
              if source_op(v.initializer.inputs[1]) == "RestoreV2"}

    assert not restored()
    assert isinstance(spec.scaffold_fn(), tf.train.Scaffold)
    bert = {n for n, _ in tf.train.list_variables(encoder_ckpt)
            if n.startswith("bert/")}
    assert restored() == bert

  # EVAL: (metric_fn, tensors); padding examples and unlabelled positions
  # change nothing, a labelled position of a real example does.
  with tf.Graph().as_default():
    feats = {k: tf.placeholder(tf.int32, v.shape) for k, v in base.items()}
    spec = model_fn(feats, None, tf.estimator.ModeKeys.EVAL, params)
    metric_fn, tensors = spec.eval_metrics
    assert callable(metric_fn) and isinstance(tensors, list)
    metrics = metric_fn(*tensors)
    updates = [op for _, op in metrics.values()]
    values = {k: v for k, (v, _) in metrics.items()}
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())

      def evaluate(arrays):
        feed = {feats[k]: arrays[k] for k in arrays}
        sess.run(tf.local_variables_initializer())
        loss, predictions = sess.run([spec.loss, tensors[3]], feed)
        sess.run(updates, feed)
        return loss, predictions, sess.run(values)

      loss, predictions, got = evaluate(base)
      weights = base["label_mask"] * base["is_real_example"][:, None]
      correct = (predictions == base["label_ids"]) * weights
      assert got["eval_token_accuracy"] == pytest.approx(
          correct.sum() / weights.sum(), rel=1e-6)

      changed = {k: v.copy() for k, v in base.items()}
      changed["label_ids"][-1] = (changed["label_ids"][-1] + 1) % num_labels
      changed["label_mask"][-1] = 1
      unlabelled = np.argwhere(base["label_mask"][0] == 0)[0, 0]
      changed["label_ids"][0, unlabelled] += 1
      loss2, _, got2 = evaluate(changed)
      assert loss2 == pytest.approx(loss, rel=1e-6)
      assert got2 == pytest.approx(got, rel=1e-6)

      labelled = np.argwhere(base["label_mask"][0] == 1)[0, 0]
      changed["label_ids"][0, labelled] = (
          changed["label_ids"][0, labelled] + 1) % num_labels
      loss3, _, _ = evaluate(changed)
      assert loss3 != pytest.approx(loss, rel=1e-6)

  # PREDICT: per-piece label ids and probabilities, fixed shapes.
  with tf.Graph().as_default():
    feats = {k: tf.constant(v) for k, v in base.items()}
    spec = model_fn(feats, None, tf.estimator.ModeKeys.PREDICT, params)
    assert spec.predictions["predictions"].shape.as_list() == [batch, seq]
    assert spec.predictions["predictions"].dtype == tf.int32
    probs = spec.predictions["probabilities"]
    assert probs.shape.as_list() == [batch, seq, num_labels]
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      p, ids = sess.run([probs, spec.predictions["predictions"]])
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(ids, p.argmax(-1))

  # The TPU input pipeline has static batch shapes (drop_remainder).
  path = str(tmp_path / "x.tf_record")
  feats_list = [ner_features.padding_feature(seq)] * 5
  ner_features.write_tfrecord(feats_list, path)
  with tf.Graph().as_default():
    dataset = ner_features.file_based_input_fn_builder(
        path, seq, is_training=True, drop_remainder=True)(params)
    for key, spec_ in dataset.element_spec.items():
      assert spec_.shape.is_fully_defined(), key
      assert spec_.shape[0] == batch and spec_.dtype == tf.int32


# ---------------------------------------------------------------------------
# Bad input


def test_model_fn_crf_head(tiny_config, encoder_ckpt):
  """crf=True: fresh ner/crf_* variables trained with the rest (TPU graph);
  in EVAL, eval_loss is the CRF loss, and batch padding changes nothing."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from bio.ner import model as ner_model  # pylint: disable=g-import-not-at-top
  batch, seq, num_labels = 4, 16, 3
  base = _random_features(np.random.RandomState(1), batch, seq, num_labels,
                          tiny_config.vocab_size)
  model_fn = ner_model.model_fn_builder(
      tiny_config, num_labels, encoder_ckpt, 1e-3, 10, 2, use_tpu=True,
      use_one_hot_embeddings=True, crf=True)
  params = {"batch_size": batch}
  with tf.Graph().as_default():
    feats = {k: tf.constant(v) for k, v in base.items()}
    spec = model_fn(feats, None, tf.estimator.ModeKeys.TRAIN, params)
    trainable = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()}
    assert trainable["ner/crf_transitions"] == [num_labels, num_labels]
    assert trainable["ner/crf_start"] == trainable["ner/crf_end"] == [
        num_labels]
    assert spec.train_op is not None

  with tf.Graph().as_default():
    feats = {k: tf.placeholder(tf.int32, v.shape) for k, v in base.items()}
    spec = model_fn(feats, None, tf.estimator.ModeKeys.EVAL, params)
    metric_fn, tensors = spec.eval_metrics
    metrics = metric_fn(*tensors)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())

      def evaluate(arrays):
        feed = {feats[k]: arrays[k] for k in arrays}
        sess.run(tf.local_variables_initializer())
        sess.run([op for _, op in metrics.values()], feed)
        return sess.run(spec.loss, feed), sess.run(metrics["eval_loss"][0])

      loss, eval_loss = evaluate(base)
      assert eval_loss == pytest.approx(loss, rel=1e-5)
      changed = {k: v.copy() for k, v in base.items()}
      changed["label_ids"][-1] = (changed["label_ids"][-1] + 1) % num_labels
      assert evaluate(changed) == pytest.approx((loss, eval_loss), rel=1e-6)


def _opts(data_dir, out, **overrides):
  """A NerOptions for a tiny run; tokenizer and TPU fields given flat."""
  from albert import common_flags  # pylint: disable=g-import-not-at-top
  from albert import estimator_utils  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  opts = dict(
      data_dir=data_dir, dataset=None, collapse_types=False,
      albert_config_file=TINY_CONFIG, init_checkpoint=None, output_dir=out,
      do_train=True, do_eval=True, do_predict=True, max_seq_length=MAX_SEQ,
      train_batch_size=8, eval_batch_size=8, predict_batch_size=8,
      learning_rate=1e-3, train_step=2, warmup_step=0, optimizer="adamw")
  tokenizer = dict(spm_model_file=None, vocab_file=None, do_lower_case=True)
  tpu = dict(use_tpu=False, iterations_per_loop=2, save_checkpoints_steps=2,
             keep_checkpoint_max=5)
  for key, value in overrides.items():
    group = (tokenizer if key in tokenizer else
             tpu if key in {f.name for f in dataclasses.fields(
                 estimator_utils.TpuOptions)} else opts)
    group[key] = value
  return runner.NerOptions(
      tokenizer=common_flags.TokenizerOptions(**tokenizer),
      tpu=estimator_utils.TpuOptions(**tpu), **opts)


def _copy_slice(src, dst, edit=None):
  os.makedirs(dst)
  for name in SLICE:
    with open(os.path.join(src, name), encoding="utf-8") as f:
      lines = f.readlines()
    if edit and name in edit:
      lines = edit[name](lines)
    with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
      f.writelines(lines)


@pytest.fixture(scope="module")
def refused_runs(e2e, ncbi_slice, spm_model, encoder_ckpt, tmp_path_factory):
  """Four run_ner.py runs that must stop before writing, started at once
  (each is mostly an interpreter and TensorFlow start-up): `missing_tab`
  (line 5 of train.tsv has no tab), `mismatched` (a copy of the e2e output
  dir, run again with another learning rate), `edited_config` (another
  copy, its config file edited in place) and `other_decode` (the first
  copy, evaluated on dev with another --decode than its dev results')."""
  import shutil  # pylint: disable=g-import-not-at-top
  from bio.ner import run_dir  # pylint: disable=g-import-not-at-top
  work = tmp_path_factory.mktemp("refused")
  data = str(work / "data")

  def break_line_5(lines):
    lines[4] = lines[4].replace("\t", " ")
    return lines

  _copy_slice(ncbi_slice, data, {"train.tsv": break_line_5})
  copy = str(work / "copy")
  shutil.copytree(e2e.out, copy)
  before = {n: os.path.getmtime(os.path.join(copy, n))
            for n in os.listdir(copy)}
  # The e2e run's config edited in place: the same file name, recorded as
  # such in a copy of the run, holds another model.
  edited = str(work / "edited")
  shutil.copytree(e2e.out, edited)
  edited_config = str(work / "config.json")
  with open(TINY_CONFIG) as f:
    config = json.load(f)
  with open(edited_config, "w") as f:
    json.dump(dict(config, hidden_dropout_prob=0.25), f)
  recorded = run_dir.read_run_config(edited)
  recorded[run_dir.SETTINGS_KEY]["albert_config_file"] = edited_config
  run_dir.write_run_config(edited, recorded)
  same_run = [
      "--data_dir=" + e2e.data, "--spm_model_file=" + spm_model,
      "--init_checkpoint=" + encoder_ckpt, "--do_train", "--do_eval",
      "--do_predict", "--max_seq_length=%d" % MAX_SEQ,
      "--train_batch_size=16", "--eval_batch_size=16",
      "--predict_batch_size=8", "--train_step=200", "--warmup_step=10",
      "--save_checkpoints_steps=100"]
  args = {
      "missing_tab": [
          "--data_dir=" + data, "--albert_config_file=" + TINY_CONFIG,
          "--spm_model_file=" + spm_model,
          "--output_dir=%s" % (work / "out"), "--do_train", "--do_eval",
          "--do_predict", "--max_seq_length=32"],
      "mismatched": same_run + [
          "--albert_config_file=" + TINY_CONFIG, "--output_dir=" + copy,
          "--learning_rate=2e-3"],
      "edited_config": same_run + [
          "--albert_config_file=" + edited_config, "--output_dir=" + edited,
          "--learning_rate=1e-3"],
      "other_decode": [
          "--data_dir=" + e2e.data, "--albert_config_file=" + TINY_CONFIG,
          "--spm_model_file=" + spm_model, "--output_dir=" + copy,
          "--do_eval", "--max_seq_length=%d" % MAX_SEQ, "--decode=viterbi"],
  }
  procs = {name: subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "run_ner.py")] + a, cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for name, a in args.items()}
  runs = {}
  for name, proc in procs.items():
    _, err = proc.communicate(timeout=300)
    runs[name] = types.SimpleNamespace(returncode=proc.returncode,
                                       stderr=err)
  return types.SimpleNamespace(data=data, out=str(work / "out"), copy=copy,
                               before=before, **runs)


def test_missing_tab_exits_nonzero_naming_file_and_line(refused_runs):
  proc, data = refused_runs.missing_tab, refused_runs.data
  assert proc.returncode != 0
  assert "run_ner.py: error: %s:5: no tab" % os.path.join(
      data, "train.tsv") in proc.stderr
  assert not any(os.path.exists(os.path.join(refused_runs.out, n))
                 for n in RESULT_FILES)


@pytest.mark.parametrize("split,edit,message", [
    ("test.tsv", lambda ls: ls[:2] + ["x\tX-Disease\n"] + ls[2:],
     r"test\.tsv:3: .*'X-Disease'"),
    ("devel.tsv", lambda ls: ["\n"], r"devel\.tsv:1: empty split"),
    ("train.tsv", lambda ls: ls[:3] + ["a\tO\textra\n"] + ls[3:],
     r"train\.tsv:4: 3 columns"),
])
def test_bad_files_raise_before_any_output(ncbi_slice, spm_model, tmp_path,
                                           split, edit, message):
  from bio.ner import iob  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  data = str(tmp_path / "data")
  _copy_slice(ncbi_slice, data, {split: edit})
  out = str(tmp_path / "out")
  with pytest.raises(iob.NerFormatError, match=message):
    runner.run(_opts(data, out, spm_model_file=spm_model))
  assert not os.path.exists(out)


def test_unseen_test_label_warns_with_file_and_line(ncbi_slice, spm_model,
                                                    tmp_path, caplog):
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  data = str(tmp_path / "data")
  _copy_slice(ncbi_slice, data,
              {"test.tsv": lambda ls: ["aspirin\tB-Chemical\n"] + ls})
  inputs = runner.RunInputs(
      _opts(data, str(tmp_path / "out"), spm_model_file=spm_model))
  assert "B-Chemical" not in inputs.label_map
  assert re.search(r"test\.tsv:1: label 'B-Chemical' never occurs",
                   caplog.text)
  features = inputs.features("test")
  assert features[0].label_mask[1] == 1


def test_flag_errors(ncbi_slice, spm_model, tmp_path):
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out")
  bad = [
      dict(do_train=False, do_eval=False, do_predict=False),
      dict(data_dir=None),
      dict(spm_model_file=None),
      dict(max_seq_length=2),
      dict(max_seq_length=1024),  # above max_position_embeddings
  ]
  for overrides in bad:
    opts = _opts(**dict(dict(data_dir=ncbi_slice, out=out,
                             spm_model_file=spm_model), **overrides))
    with pytest.raises(runner.NerRunError):
      runner.run(opts)
  assert not os.path.exists(out)
  # A mirrored batch that does not split over the replicas.
  from albert import precision  # pylint: disable=g-import-not-at-top
  with pytest.raises(runner.NerRunError, match="does not split over 3"):
    runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model,
                     training=precision.TrainingOptions(
                         distribution="mirrored", num_cpu_replicas=3)))
  assert not os.path.exists(out)
  # Dev selection trains in several calls, which a cluster cannot do.
  with pytest.raises(runner.NerRunError, match="multi_worker is for "
                     "run_pretraining.py"):
    runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model,
                     training=precision.TrainingOptions(
                         distribution="multi_worker")))
  assert not os.path.exists(out)
  # Predicting with nothing trained is an error too, not a random model.
  with pytest.raises(runner.NerRunError, match="no fine-tuned"):
    runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model,
                         do_train=False, do_eval=False))


# ---------------------------------------------------------------------------
# --train_split=train_dev


def _record_input_ids(path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ids = []
  for raw in tf.data.TFRecordDataset(path):
    example = tf.train.Example.FromString(raw.numpy())
    ids.append(list(example.features.feature["input_ids"].int64_list.value))
  return ids


def test_train_dev_trains_on_train_then_dev_and_tests_the_last_checkpoint(
    ncbi_slice, spm_model, tmp_path):
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  data = ncbi_slice
  out = str(tmp_path / "out")
  opts = _opts(data, out, spm_model_file=spm_model, do_eval=False,
               train_split="train_dev")
  runner.run(opts)
  # The training records are the train windows, then the dev windows.
  split_inputs = runner.RunInputs(
      dataclasses.replace(opts, train_split="train", do_train=False))
  expected = [f.input_ids for split in ("train", "dev")
              for f in split_inputs.features(split)]
  assert _record_input_ids(os.path.join(out, "train.tf_record")) == expected
  assert len(expected) >= sum(len(read_blocks(os.path.join(data, n)))
                              for n in ("train.tsv", "devel.tsv"))
  # No dev selection: the last checkpoint is tested, and the results say
  # what the model was trained on.
  assert not os.path.exists(os.path.join(out, "dev_results.json"))
  with open(os.path.join(out, "test_results.json")) as f:
    payload = json.load(f)
  assert (payload["train_split"], payload["step"]) == ("train_dev", 2)
  assert "dev_f1" not in payload
  with open(os.path.join(out, "test_results.txt")) as f:
    assert "trained on: train_dev (%s + %s)\n" % (
        os.path.join(data, "train.tsv"), os.path.join(data, "devel.tsv")) \
        in f.read()
  # The same directory does not take a train-only run.
  before = {n: os.path.getmtime(os.path.join(out, n))
            for n in os.listdir(out)}
  with pytest.raises(runner.NerRunError, match=(
      r"other settings \(train_file: .* there, .* now; train_split: "
      r"'train_dev' there, 'train' now\)")):
    runner.run(dataclasses.replace(opts, train_split="train"))
  assert {n: os.path.getmtime(os.path.join(out, n))
          for n in os.listdir(out)} == before


def test_train_dev_file_is_used_when_the_dataset_has_one(ncbi_slice,
                                                         spm_model, tmp_path):
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  data = str(tmp_path / "data")
  _copy_slice(ncbi_slice, data)
  blocks = read_blocks(os.path.join(data, "train.tsv"))[:30]
  write_blocks(os.path.join(data, "train_dev.tsv"), blocks)
  inputs = runner.RunInputs(_opts(
      data, str(tmp_path / "out"), spm_model_file=spm_model, do_eval=False,
      train_split="train_dev"))
  assert inputs.train_files == [os.path.join(data, "train_dev.tsv")]
  assert [s.tokens for s in inputs.splits["train_dev"]] == [
      b[0] for b in blocks]


def test_train_dev_with_dev_selection_is_refused(ncbi_slice, spm_model,
                                                 tmp_path):
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out")
  with pytest.raises(runner.NerRunError, match=(
      r"--train_split=train_dev trains on the dev sentences, so dev cannot "
      r"choose a checkpoint: drop --do_eval")):
    runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model,
                     train_split="train_dev"))
  assert not os.path.exists(out)


def test_run_all_ner_table(monkeypatch, tmp_path):
  from bio.ner import datasets  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  from bio.ner import run_all  # pylint: disable=g-import-not-at-top
  calls = []

  def fake_resolve(name, data_dir=None):
    if name == "BC2GM":
      raise FileNotFoundError("absent")
    return "/nowhere/" + name

  def fake_run(opts):
    calls.append((opts.dataset, opts.output_dir, opts.do_eval))
    if opts.dataset == "JNLPBA":
      raise runner.NerRunError("boom | bad")
    return {"test": {"conlleval_precision": 0.5, "conlleval_recall": 0.25,
                     "conlleval_f1": 1 / 3, "strict_f1": 0.3, "step": 200}}

  monkeypatch.setattr(datasets, "resolve_dataset_dir", fake_resolve)
  monkeypatch.setattr(runner, "run", fake_run)
  base = _opts(None, str(tmp_path), do_eval=False)
  rows = run_all.run_all(base, ["NCBI-disease", "BC2GM", "JNLPBA"])
  assert [c[0] for c in calls] == ["NCBI-disease", "JNLPBA"]
  assert calls[0][1] == os.path.join(str(tmp_path), "NCBI-disease")
  assert calls[0][2] and base.dataset is None and base.do_eval is False
  with open(os.path.join(str(tmp_path), "table_v.md")) as f:
    table = f.read()
  assert "| NCBI-disease | Disease | 50.00 | 25.00 | 33.33 | 30.00 | 200 |" \
      in table
  assert table == run_all.format_table(rows)
  lines = table.splitlines()
  assert len(lines) == 2 + 3
  assert lines[3].startswith("| BC2GM | GENE | - |")
  assert "not available" in lines[3]
  assert lines[4].startswith("| JNLPBA |") and "failed: boom / bad" in lines[4]
  # Trained on dev too, a run has no dev selection.
  calls.clear()
  run_all.run_all(dataclasses.replace(base, train_split="train_dev"),
                  ["NCBI-disease"])
  assert calls == [("NCBI-disease",
                    os.path.join(str(tmp_path), "NCBI-disease"), False)]


def test_options_from_flags_keep_run_ner_names_and_defaults():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  runner.define_flags(flag_values)
  flag_values(["run_ner.py", "--output_dir=/o", "--spm_model_file=m",
               "--init_checkpoint=c", "--use_tpu=false"])
  opts = runner.options_from_flags(flag_values)
  # The paper's Table III.
  assert (opts.max_seq_length, opts.train_batch_size, opts.learning_rate,
          opts.train_step, opts.warmup_step) == (512, 32, 1e-5, 5336, 320)
  assert opts.tpu.save_checkpoints_steps == 200
  assert opts.tpu.iterations_per_loop == 200
  assert opts.tpu.keep_checkpoint_max == 5
  assert opts.tokenizer.spm_model_file == "m" and opts.tokenizer.do_lower_case
  assert opts.output_dir == "/o" and opts.init_checkpoint == "c"
  assert opts.seed is None and not opts.overwrite
  assert opts.train_split == "train"
  with pytest.raises(Exception):
    opts.train_step = 1  # frozen


# ---------------------------------------------------------------------------
# Hardening (issue 11)


def test_training_runs_once_and_evaluates_every_checkpoint(e2e):
  # One estimator.train call: TPUEstimator logs "Create CheckpointSaverHook."
  # twice per call (4 with the old train call per checkpoint).
  assert e2e.log.count("Create CheckpointSaverHook.") == 2
  assert re.findall(r"dev @ step (\d+):", e2e.log) == ["100", "200"]


def test_second_run_on_a_locked_output_dir_stops(ncbi_slice, spm_model,
                                                 tmp_path):
  from albert import file_utils  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out")
  with file_utils.DirLock(out):
    with pytest.raises(file_utils.DirLockedError, match="in use by another"):
      runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model))
  assert os.listdir(out) == []  # nothing written by the second run


def test_mismatched_settings_stop_before_writing(refused_runs):
  proc, out = refused_runs.mismatched, refused_runs.copy
  assert proc.returncode == 1
  assert ("holds a run with other settings (learning_rate: 0.001 there, "
          "0.002 now)") in proc.stderr
  assert "Traceback" not in proc.stderr
  after = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
  assert after == refused_runs.before


def test_a_config_edited_in_place_does_not_resume_the_run(refused_runs):
  proc = refused_runs.edited_config
  assert proc.returncode == 1
  assert ("holds a run with other settings (albert_config.hidden_dropout_prob"
          ": 0 there, 0.25 now)") in proc.stderr
  assert "Traceback" not in proc.stderr


def test_dev_results_of_another_decoder_are_not_mixed_in(refused_runs):
  proc, out = refused_runs.other_decode, refused_runs.copy
  assert proc.returncode == 1
  assert ("dev_results.json were decoded with --decode=argmax, not viterbi"
          in proc.stderr)
  assert "Traceback" not in proc.stderr
  after = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
  assert after == refused_runs.before


def test_test_split_redecoded_with_viterbi(e2e, spm_model, tmp_path):
  """--do_predict alone with --decode=viterbi on a copy of the e2e run: the
  checkpoint dev chose, tagged again; every sentence valid IOB2 and the
  scores those of seqeval on the written predictions."""
  import shutil  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "run")
  shutil.copytree(e2e.out, out)
  proc = run_ner_cli([
      "--data_dir=" + e2e.data, "--albert_config_file=" + TINY_CONFIG,
      "--spm_model_file=" + spm_model,
      "--output_dir=" + out, "--do_predict", "--max_seq_length=%d" % MAX_SEQ,
      "--predict_batch_size=8", "--decode=viterbi"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(out, "test_results.json")) as f:
    payload = json.load(f)
  with open(os.path.join(e2e.out, "test_results.json")) as f:
    argmax_payload = json.load(f)
  assert payload["decode"] == "viterbi" and argmax_payload["decode"] == "argmax"
  assert payload["checkpoint"] == argmax_payload["checkpoint"]
  rows = read_predictions(os.path.join(out, "test_predictions.txt"))
  y_true = [[r[1] for r in s] for s in rows]
  y_pred = [[r[2] for r in s] for s in rows]
  from bio.ner import iob  # pylint: disable=g-import-not-at-top
  # Valid IOB2: the reader's repair pass has nothing to repair.
  assert not any(iob.normalize_to_iob2(labels)[1] for labels in y_pred)
  assert payload["conlleval_f1"] == pytest.approx(
      seqeval_metrics.f1_score(y_true, y_pred, zero_division=0), abs=1e-12)
  # On valid IOB2 both of seqeval's modes find the same entities.
  assert payload["strict_f1"] == pytest.approx(payload["conlleval_f1"],
                                               abs=1e-12)
  with open(os.path.join(out, "test_results.txt")) as f:
    assert "decode: viterbi" in f.read()


@pytest.fixture(scope="module")
def e2e_crf(work, ncbi_slice, spm_model, encoder_ckpt):
  """The e2e run again with the CRF head (--decode=crf)."""
  # Seeded: at this size an unseeded run may still tag every word O, and
  # the checks below need entities.
  return _train_tiny(str(work / "out_crf"), ncbi_slice, spm_model,
                     encoder_ckpt, "--decode=crf", "--seed=1")


def test_crf_run_trains_its_head_and_decodes_by_it(e2e_crf):
  """The chosen checkpoint holds learned CRF scores; the predictions are
  those scores' Viterbi path over the checkpoint's word probabilities,
  recomputed here from the checkpoint itself."""
  from albert import tokenization  # pylint: disable=g-import-not-at-top
  from bio.ner import crf, decoding, iob  # pylint: disable=g-import-not-at-top
  from bio.ner import features as ner_features  # pylint: disable=g-import-not-at-top
  from tests.bio import tiny_ner  # pylint: disable=g-import-not-at-top
  with open(os.path.join(e2e_crf.out, "run_config.json")) as f:
    config = json.load(f)
  assert config["settings"]["crf"] is True
  with open(os.path.join(e2e_crf.out, "test_results.json")) as f:
    payload = json.load(f)
  assert payload["decode"] == "crf"
  checkpoint = os.path.join(e2e_crf.out, payload["checkpoint"])
  params = crf.load_params(checkpoint, "ner")
  assert params.transitions.shape == (3, 3)
  assert np.abs(params.transitions).max() > 1e-3  # trained, not the zeros

  labels = config["label_list"]
  gold = read_blocks(os.path.join(e2e_crf.data, "test.tsv"))
  tokenizer = tokenization.FullTokenizer(
      None, do_lower_case=True, spm_model_file=config["spm_model_file"])
  encoder = ner_features.PieceEncoder(tokenizer, do_lower_case=True)
  feats = ner_features.convert_sentences(
      [iob.Sentence(tokens, tags) for tokens, tags in gold],
      {l: i for i, l in enumerate(labels)}, MAX_SEQ, encoder)
  window_probs = tiny_ner.window_probabilities(
      checkpoint, ner_features.features_to_arrays(feats), len(labels),
      TINY_CONFIG)
  rows = ner_features.assemble_word_values(feats, window_probs,
                                          [len(t) for t, _ in gold])
  expected = decoding.decode(rows, labels, "crf", crf=params)
  written = [[r[2] for r in s] for s in read_predictions(
      os.path.join(e2e_crf.out, "test_predictions.txt"))]
  same = sum(w == e for w, e in zip(written, expected))
  # One sentence may differ by a float near-tie between batchings.
  assert same >= len(gold) - 1
  assert not any(iob.normalize_to_iob2(p)[1] for p in written)
  assert written != decoding.decode(rows, labels, "viterbi")


def test_crf_export_serves_run_ner_predictions(e2e_crf, tmp_path,
                                               serve_texts):
  test_exported_model_agrees_with_run_ner_predictions(e2e_crf, tmp_path,
                                                      serve_texts)
  with open(os.path.join(str(tmp_path / "export"), "assets",
                         "serving_options.json")) as f:
    assert json.load(f)["decode"] == "crf"


def test_crf_decode_of_a_softmax_run_is_one_error(e2e, spm_model, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "run")
  shutil.copytree(e2e.out, out)
  before = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
  common = ["--data_dir=" + e2e.data, "--albert_config_file=" + TINY_CONFIG,
            "--spm_model_file=" + spm_model, "--output_dir=" + out,
            "--max_seq_length=%d" % MAX_SEQ, "--decode=crf"]
  # Both at once (each is mostly a start-up). Training on with the CRF
  # head would resume a softmax run: refused too.
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "run_ner.py")] + common + extra,
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for extra in (["--do_predict"], ["--do_train", "--train_step=300"])]
  (_, predict_err), (_, train_err) = [p.communicate(timeout=600)
                                      for p in procs]
  assert [p.returncode for p in procs] == [1, 1]
  assert "--decode=crf needs a model fine-tuned with --decode=crf" in \
      predict_err
  assert "crf: False there, True now" in train_err
  assert "Traceback" not in predict_err + train_err
  after = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
  assert after == before


def _fake_ckpt(prefix):
  for ext in (".index", ".data-00000-of-00001"):
    with open(prefix + ext, "w") as f:
      f.write(ext)


def test_resume_keeps_earlier_dev_results_and_best(monkeypatch, tmp_path):
  from bio.ner import iob  # pylint: disable=g-import-not-at-top
  from bio.ner import run_dir  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  out = str(tmp_path)
  for step in (100, 200):
    _fake_ckpt(os.path.join(out, "model.ckpt-%d" % step))
  # An interrupted run: step 100 evaluated (F1 0.9) and copied to best/.
  run_dir.record_best(out, os.path.join(out, "model.ckpt-100"))
  earlier = {"step": 100, "checkpoint": "model.ckpt-100",
             "conlleval_precision": 0.9, "conlleval_recall": 0.9,
             "conlleval_f1": 0.9, "strict_f1": 0.9, "token_accuracy": 0.9}
  with open(os.path.join(out, run_dir.DEV_RESULTS_FILE), "w") as f:
    json.dump({"records": [earlier], "chosen": earlier, "final": False}, f)
  gold = [iob.Sentence(["a", "b"], ["B-X", "O"])] * 4
  evaluated = []

  def fake_predict(estimator, features, sentences, input_file, checkpoint,
                   id_to_label, name, order=None, decode="argmax"):
    assert decode == "argmax"  # the options' default
    evaluated.append(os.path.basename(checkpoint))
    # 2 of 3 predicted entities right, 2 of 4 found: P 2/3, R 1/2, F1 4/7.
    return [["B-X", "O"], ["B-X", "O"], ["O", "O"], ["O", "B-X"]]

  monkeypatch.setattr(runner, "predict_sentences", fake_predict)
  selector = runner.DevSelector(_opts(None, out), None, gold, None, None,
                                ["O", "B-X"], "dev.tsv")
  selector.evaluate_new()
  assert evaluated == ["model.ckpt-200"]
  assert selector.best["step"] == 100
  assert run_dir.read_best_checkpoint(out) == os.path.join(
      out, "best", "model.ckpt-100")
  assert os.path.exists(os.path.join(out, "best", "model.ckpt-100.index"))
  with open(os.path.join(out, run_dir.DEV_RESULTS_FILE)) as f:
    payload = json.load(f)
  assert [r["step"] for r in payload["records"]] == [100, 200]
  assert payload["chosen"]["step"] == 100
  assert payload["records"][1]["conlleval_f1"] == pytest.approx(4 / 7)


def _save_encoder(path, config):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from albert import modeling  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    modeling.AlbertModel(config, False, tf.zeros([1, 4], dtype=tf.int32))
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      return tf.train.Saver().save(sess, path)


def test_bad_init_checkpoint_is_one_error_before_any_output(
    ncbi_slice, spm_model, tiny_config, tmp_path):
  import copy  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out")
  missing = str(tmp_path / "nope" / "model.ckpt-5")
  with pytest.raises(runner.NerRunError, match="no such checkpoint"):
    runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model,
                     init_checkpoint=missing))
  other = copy.deepcopy(tiny_config)
  other.vocab_size = tiny_config.vocab_size + 7
  wrong = _save_encoder(str(tmp_path / "wrong" / "model.ckpt"), other)
  expected = (r"variable bert/embeddings/word_embeddings has shape "
              r"\[%d, %d\] there but \[%d, %d\]" % (
                  other.vocab_size, other.embedding_size,
                  tiny_config.vocab_size, tiny_config.embedding_size))
  # A directory is resolved to its checkpoint.
  with pytest.raises(runner.NerRunError, match=expected):
    runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model,
                     init_checkpoint=os.path.dirname(wrong)))
  assert not os.path.exists(out)


def test_init_checkpoint_of_another_vocabulary_stops(
    ncbi_slice, spm_model, encoder_ckpt, tiny_config, tmp_path):
  """A checkpoint recorded with another SentencePiece model is refused
  before anything is written, naming both models."""
  import shutil  # pylint: disable=g-import-not-at-top
  from albert import vocab_record  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  pretrained = tmp_path / "pretrained"
  pretrained.mkdir()
  for path in glob.glob(encoder_ckpt + ".*"):
    shutil.copy(path, pretrained)
  other_model = tmp_path / "other.model"
  other_model.write_bytes(b"not the same model")
  vocab_record.write(str(pretrained), str(other_model))
  out = str(tmp_path / "out")
  init = str(pretrained / os.path.basename(encoder_ckpt))
  with pytest.raises(runner.NerRunError) as e:
    runner.run(_opts(ncbi_slice, out, spm_model_file=spm_model,
                     init_checkpoint=init))
  assert spm_model in str(e.value) and "other.model" in str(e.value)
  assert not os.path.exists(out)
  # The same checkpoint recorded with the run's own model passes the check.
  vocab_record.write(str(pretrained), spm_model)
  assert runner.check_init_checkpoint(
      _opts(ncbi_slice, out, spm_model_file=spm_model, init_checkpoint=init),
      tiny_config) == init


def test_run_all_seeds_table_mean_sd(monkeypatch, tmp_path):
  import statistics  # pylint: disable=g-import-not-at-top
  from bio.ner import datasets  # pylint: disable=g-import-not-at-top
  from bio.ner import runner  # pylint: disable=g-import-not-at-top
  from bio.ner import run_all  # pylint: disable=g-import-not-at-top
  calls = []
  f1s = {1: 0.5, 2: 0.6, 3: 0.8}

  def fake_run(opts):
    calls.append((opts.seed, opts.output_dir))
    f1 = f1s[opts.seed]
    return {"test": {"conlleval_precision": f1, "conlleval_recall": f1,
                     "conlleval_f1": f1, "strict_f1": f1, "step": opts.seed}}

  monkeypatch.setattr(datasets, "resolve_dataset_dir",
                      lambda name, data_dir=None: "/nowhere")
  monkeypatch.setattr(runner, "run", fake_run)
  rows = run_all.run_all(_opts(None, str(tmp_path)), ["NCBI-disease"],
                         seeds=3)
  assert calls == [(s, os.path.join(str(tmp_path), "NCBI-disease",
                                    "seed-%d" % s)) for s in (1, 2, 3)]
  values = [100 * f for f in f1s.values()]
  cell = "%.2f ± %.2f" % (sum(values) / 3, statistics.stdev(values))
  assert cell == "63.33 ± 15.28"
  line = run_all.format_table(rows).splitlines()[2]
  assert line.startswith("| NCBI-disease | Disease | %s | %s | %s | %s | "
                         "1, 2, 3 |" % ((cell,) * 4))
