# coding=utf-8
"""The port against outputs of upstream google-research/albert itself.

The golden directory (README there; found by the `golden_dir` fixture in
tests/conftest.py, else these tests skip) holds what upstream's own code
wrote under TF 2.15 and Python 3.11:
  * model/: a checkpoint after one LAMB step and the outputs it gives; our
    graph must restore it strictly and give the same outputs;
  * tokenization/: upstream FullTokenizer pieces and ids of 224 sentences;
  * pretraining_data/: upstream create_pretraining_data TFRecords for three
    flag settings; our script must write the same bytes.
"""
import json
import os
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import create_pretraining_data as cpd
from albert import modeling
from albert import optimization
from albert import run_pretraining
from albert import tokenization

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "create_pretraining_data.py")
UNDERLINE = u"\u2581"


# --- model/ ------------------------------------------------------------------


def _build_pretraining_graph(config, inputs):
  """Upstream's pretraining graph and optimizer; returns the output tensors."""
  model = modeling.AlbertModel(
      config=config, is_training=False,
      input_ids=tf.constant(inputs["input_ids"]),
      input_mask=tf.constant(inputs["input_mask"]),
      token_type_ids=tf.constant(inputs["segment_ids"]),
      use_one_hot_embeddings=False)
  mlm_loss, _, mlm_log_probs = run_pretraining.get_masked_lm_output(
      config, model.get_sequence_output(), model.get_embedding_table(),
      tf.constant(inputs["masked_lm_positions"]),
      tf.constant(inputs["masked_lm_ids"]),
      tf.constant(inputs["masked_lm_weights"]))
  sop_loss, _, sop_log_probs = run_pretraining.get_sentence_order_output(
      config, model.get_pooled_output(),
      tf.constant(inputs["sentence_order_labels"]))
  total_loss = mlm_loss + sop_loss
  # The README's optimizer settings; only its variables (slots, global step)
  # matter here, the train op is never run.
  optimization.create_optimizer(total_loss, 0.01, 100, 10, False, "lamb")
  batch, num_predictions = inputs["masked_lm_positions"].shape
  return {
      "sequence_output": model.get_sequence_output(),
      "pooled_output": model.get_pooled_output(),
      "masked_lm_log_probs": tf.reshape(
          mlm_log_probs, [batch, num_predictions, config.vocab_size]),
      "sentence_order_log_probs": sop_log_probs,
      "total_loss": total_loss,
  }


def test_checkpoint_restores_strictly_and_outputs_match(golden_dir):
  model_dir = os.path.join(golden_dir, "model")
  checkpoint = os.path.join(model_dir, "model.ckpt-1")
  config = modeling.AlbertConfig.from_json_file(
      os.path.join(model_dir, "albert_config.json"))
  inputs = dict(np.load(os.path.join(model_dir, "inputs.npz")))
  expected = dict(np.load(os.path.join(model_dir, "outputs.npz")))
  with open(os.path.join(model_dir, "variables.json")) as f:
    listed = {name: shape for name, shape in json.load(f)}
  stored = dict(tf.train.list_variables(checkpoint))
  # The checkpoint holds what variables.json lists.
  assert {n[:-len(":0")]: s for n, s in listed.items()} == stored

  with tf.Graph().as_default():
    outputs = _build_pretraining_graph(config, inputs)
    graph_vars = {v.op.name: v for v in tf.global_variables()}
    # Strict: no variable missing from the checkpoint, none left unused.
    assert sorted(graph_vars) == sorted(stored)
    for name, var in graph_vars.items():
      assert var.shape.as_list() == stored[name], name
    assert any(n.endswith("/adam_m") for n in graph_vars)
    assert "global_step" in graph_vars
    with tf.Session() as sess:
      tf.train.Saver(var_list=graph_vars).restore(sess, checkpoint)
      values = sess.run(graph_vars)
      got = sess.run(outputs)

  reader = tf.train.load_checkpoint(checkpoint)
  for name, value in values.items():
    np.testing.assert_array_equal(value, reader.get_tensor(name), name)
  assert values["global_step"] == 1
  assert set(got) == set(expected)
  for name, value in expected.items():
    assert got[name].shape == value.shape, name
    np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-5,
                               err_msg=name)


# --- tokenization/ -----------------------------------------------------------


@pytest.fixture(scope="module")
def upstream_tokens(golden_dir):
  directory = os.path.join(golden_dir, "tokenization")
  with open(os.path.join(directory, "upstream_tokens.json"),
            encoding="utf-8") as f:
    cases = json.load(f)
  with open(os.path.join(directory, "sentences.txt"), encoding="utf-8") as f:
    sentences = f.read().splitlines()
  assert [case["text"] for case in cases] == sentences
  assert len(cases) == 224
  return os.path.join(directory, "spm.model"), cases


def test_default_tokenizer_is_upstreams(upstream_tokens):
  spm_model, cases = upstream_tokens
  tokenizer = tokenization.FullTokenizer(None, do_lower_case=True,
                                         spm_model_file=spm_model)
  for case in cases:
    text = tokenization.preprocess_text(case["text"], lower=True)
    pieces = tokenizer.tokenize(text)
    assert pieces == case["pieces"], case["text"]
    assert tokenizer.convert_tokens_to_ids(pieces) == case["ids"]
    assert tokenization.encode_ids(tokenizer.sp_model, text) == case["ids"]


def test_corrected_digit_comma_differs_only_by_word_starts(upstream_tokens):
  spm_model, cases = upstream_tokens
  corrected = tokenization.FullTokenizer(None, spm_model_file=spm_model,
                                         corrected_digit_comma=True)
  num_differing = 0
  for case in cases:
    text = tokenization.preprocess_text(case["text"], lower=True)
    pieces = corrected.tokenize(text)
    assert corrected.convert_tokens_to_ids(pieces) == [
        corrected.sp_model.PieceToId(p) for p in pieces]
    upstream = case["pieces"]
    if pieces == upstream:
      continue
    num_differing += 1
    # The corrected pieces spell the text; upstream's spell it with a word
    # start added before digits that continued a word (before a comma
    # piece, a piece ending in a digit or a lone "▁").
    spelled = "".join(pieces).replace(UNDERLINE, " ")
    assert spelled.strip() == unicodedata.normalize("NFKC", text)
    upstream_spelled = "".join(upstream).replace(UNDERLINE, " ")
    assert upstream_spelled.replace(" ", "") == spelled.replace(" ", "")
    i = j = 0
    while i < len(upstream_spelled):
      if j < len(spelled) and upstream_spelled[i] == spelled[j]:
        i += 1
        j += 1
      else:  # an extra word start, right before a digit
        assert upstream_spelled[i] == " ", case["text"]
        assert upstream_spelled[i + 1].isdigit(), case["text"]
        i += 1
    assert "," in text
  # The enumerations and numbers of the fixture ("e1, e2,", "2,3,7,8-").
  assert num_differing == 22


# --- pretraining_data/ -------------------------------------------------------


def _read_examples(path):
  return [tf.train.Example.FromString(r)
          for r in tf.io.tf_record_iterator(path)]


def _start_script(data_dir, output_file, extra_flags):
  """Our create_pretraining_data.py as upstream was run (README), in the
  background."""
  args = [sys.executable, SCRIPT,
          "--input_file=" + os.path.join(data_dir, "corpus.txt"),
          "--spm_model_file=" + os.path.join(data_dir, "spm.model"),
          "--vocab_file=" + os.path.join(data_dir, "spm.vocab"),
          "--output_file=" + output_file] + list(extra_flags)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _assert_same_records(path, golden_path):
  """Record by record first, so that a failure names the first difference."""
  got, want = _read_examples(path), _read_examples(golden_path)
  assert want
  for index, (a, b) in enumerate(zip(got, want)):
    assert a == b, "record %d differs from upstream's" % index
  assert len(got) == len(want)
  with open(path, "rb") as f, open(golden_path, "rb") as g:
    assert f.read() == g.read()


@pytest.fixture(scope="module")
def golden_flags(golden_dir):
  data_dir = os.path.join(golden_dir, "pretraining_data")
  with open(os.path.join(data_dir, "flags.json")) as f:
    settings = json.load(f)
  assert sorted(settings) == ["default", "random_next", "wwm_ngram1"]
  return data_dir, settings


@pytest.fixture(scope="module")
def script_outputs(golden_flags, tmp_path_factory):
  """{setting: records file} of the script run with each golden setting
  and with "corrected" (default + --corrected_digit_comma); the four runs
  go at once (each is mostly an interpreter and TensorFlow start-up)."""
  data_dir, settings = golden_flags
  work = tmp_path_factory.mktemp("golden_records")
  runs = dict(settings, corrected=settings["default"] + [
      "--corrected_digit_comma"])
  outputs = {name: str(work / (name + ".tfrecord")) for name in runs}
  procs = {name: _start_script(data_dir, outputs[name], flags)
           for name, flags in runs.items()}
  for name, proc in procs.items():
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (name, err[-3000:])
  return outputs


@pytest.mark.parametrize("setting", ["default", "wwm_ngram1", "random_next"])
def test_pretraining_records_are_upstreams(golden_flags, script_outputs,
                                           setting):
  data_dir, _ = golden_flags
  _assert_same_records(script_outputs[setting],
                       os.path.join(data_dir, setting + ".tfrecord"))


def test_corrected_digit_comma_flag_reaches_the_tokenizer(golden_flags,
                                                          script_outputs,
                                                          tmp_path):
  data_dir, settings = golden_flags
  assert settings["default"] == ["--max_predictions_per_seq=20",
                                 "--max_seq_length=128", "--dupe_factor=2"]
  output = script_outputs["corrected"]
  # The library, given a tokenizer with the corrected rule, writes the same.
  tokenizer = tokenization.FullTokenizer(
      None, spm_model_file=os.path.join(data_dir, "spm.model"),
      corrected_digit_comma=True)
  reference = str(tmp_path / "reference.tfrecord")
  cpd.run_single_process(
      [os.path.join(data_dir, "corpus.txt")], [reference], tokenizer, 12345,
      cpd.DataOptions(max_seq_length=128, dupe_factor=2,
                      max_predictions_per_seq=20))
  _assert_same_records(output, reference)
  # The corpus has digit-comma pieces inside words, so the rule matters.
  with open(output, "rb") as f, open(
      os.path.join(data_dir, "default.tfrecord"), "rb") as g:
    assert f.read() != g.read()
