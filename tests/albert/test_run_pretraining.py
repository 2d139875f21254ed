"""Tests for albert/run_pretraining.py and the run_pretraining.py script.

The script is only ever run in subprocesses: importing it here would define
its absl flags in the pytest process, where other scripts' tests define the
same names.
"""
import dataclasses
import gzip
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import create_pretraining_data as cpd
from albert import estimator_utils
from albert import modeling
from albert import precision
from albert import run_pretraining as rp
from albert import tokenization
from tests.albert import cluster

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "run_pretraining.py")
TINY_CONFIG = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
SEQ_LEN = 64
MAX_PRED = 10
TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL

CLS_VARIABLES = {
    "cls/predictions/transform/dense/kernel": ("hidden", "embedding"),
    "cls/predictions/transform/dense/bias": ("embedding",),
    "cls/predictions/transform/LayerNorm/beta": ("embedding",),
    "cls/predictions/transform/LayerNorm/gamma": ("embedding",),
    "cls/predictions/output_bias": ("vocab",),
    "cls/seq_relationship/output_weights": (2, "hidden"),
    "cls/seq_relationship/output_bias": (2,),
}


@pytest.fixture(scope="module")
def config():
  return modeling.AlbertConfig.from_json_file(TINY_CONFIG)


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return env


def _start_script(*args, environ=None):
  """run_pretraining.py in the background, stderr into stdout; `environ`
  adds to the environment."""
  return subprocess.Popen([sys.executable, SCRIPT] + list(args), cwd=ROOT,
                          env=dict(_env(), **(environ or {})),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _finish(proc):
  """(returncode, combined log text) of a `_start_script` process."""
  log, _ = proc.communicate(timeout=300)
  return proc.returncode, log


def _run_script(*args):
  """Runs run_pretraining.py; returns (returncode, combined log text)."""
  return _finish(_start_script(*args))


def _read_eval_results(path):
  results = {}
  with open(path) as f:
    for line in f:
      key, value = line.rstrip("\n").split(" = ")
      results[key] = float(value)
  return results


# ---------------------------------------------------------------------------
# Synthetic records (the TPU branch and input_fn need no real data).


def _synthetic_example(rng, seq_len, max_pred, vocab_size, label):
  length = int(rng.randint(max_pred + 3, seq_len + 1))
  ids = [2] + list(rng.randint(5, vocab_size, length - 2)) + [3]
  positions = sorted(rng.choice(np.arange(1, length - 1), max_pred - 2,
                                replace=False))
  num_pad = seq_len - length
  features = {
      "input_ids": ids + [0] * num_pad,
      "input_mask": [1] * length + [0] * num_pad,
      "segment_ids": [0] * (length // 2) + [1] * (length - length // 2) +
                     [0] * num_pad,
      "masked_lm_positions": list(positions) + [0, 0],
      "masked_lm_ids": [ids[p] for p in positions] + [0, 0],
      "masked_lm_weights": [1.0] * (max_pred - 2) + [0.0, 0.0],
      "next_sentence_labels": [label],
  }
  return features


def _to_example(features):
  example = tf.train.Example()
  for name, values in features.items():
    if name == "masked_lm_weights":
      example.features.feature[name].float_list.value.extend(values)
    else:
      example.features.feature[name].int64_list.value.extend(
          int(v) for v in values)
  return example


def _synthetic_records(num, seed=0):
  rng = np.random.RandomState(seed)
  return [_synthetic_example(rng, SEQ_LEN, MAX_PRED, 1000, i % 2)
          for i in range(num)]


def _write_synthetic(path, num, seed=0):
  records = _synthetic_records(num, seed)
  with tf.io.TFRecordWriter(path) as writer:
    for features in records:
      writer.write(_to_example(features).SerializeToString())
  return records


def _constant_features(records):
  """A batch of `records` as int32/float32 constants, as the input_fn gives."""
  features = {}
  for name in records[0]:
    dtype = tf.float32 if name == "masked_lm_weights" else tf.int32
    features[name] = tf.constant([r[name] for r in records], dtype=dtype)
  return features


# ---------------------------------------------------------------------------
# Heads and gather_indexes against NumPy.


def _np_gelu(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _np_log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_gather_indexes_matches_numpy():
  rng = np.random.RandomState(3)
  seq = rng.randn(3, 7, 5).astype(np.float32)
  positions = rng.randint(0, 7, size=(3, 4)).astype(np.int32)
  with tf.Graph().as_default(), tf.Session() as sess:
    got = sess.run(rp.gather_indexes(tf.constant(seq), tf.constant(positions)))
  expected = np.stack([seq[b, p] for b in range(3) for p in positions[b]])
  np.testing.assert_allclose(got, expected)


def test_heads_match_numpy_reference(config):
  rng = np.random.RandomState(4)
  batch, num_pred = 3, 4
  seq = rng.randn(batch, SEQ_LEN, config.hidden_size).astype(np.float32)
  table = rng.randn(config.vocab_size, config.embedding_size).astype(np.float32)
  positions = rng.randint(0, SEQ_LEN, (batch, num_pred)).astype(np.int32)
  label_ids = rng.randint(0, config.vocab_size, (batch, num_pred))
  weights = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
  pooled = rng.randn(batch, config.hidden_size).astype(np.float32)
  order = np.array([0, 1, 1], np.int32)
  with tf.Graph().as_default(), tf.Session() as sess:
    mlm = rp.get_masked_lm_output(
        config, tf.constant(seq), tf.constant(table), tf.constant(positions),
        tf.constant(label_ids.astype(np.int32)), tf.constant(weights))
    sop = rp.get_sentence_order_output(config, tf.constant(pooled),
                                       tf.constant(order))
    variables = {v.op.name: v for v in tf.global_variables()}
    assert set(variables) == set(CLS_VARIABLES)
    sess.run(tf.global_variables_initializer())
    # Non-trivial values everywhere, so that each one matters.
    values = {}
    for name, var in variables.items():
      values[name] = rng.randn(*var.shape.as_list()).astype(np.float32) * 0.5
      var.load(values[name], sess)
    (mlm_loss, mlm_example_loss, mlm_log_probs, sop_loss, sop_example_loss,
     sop_log_probs) = sess.run(list(mlm) + list(sop))

  gathered = seq[np.arange(batch)[:, None], positions].reshape(
      -1, config.hidden_size)
  h = _np_gelu(gathered @ values["cls/predictions/transform/dense/kernel"] +
               values["cls/predictions/transform/dense/bias"])
  mean = h.mean(-1, keepdims=True)
  var = ((h - mean)**2).mean(-1, keepdims=True)
  h = ((h - mean) / np.sqrt(var + 1e-12) *
       values["cls/predictions/transform/LayerNorm/gamma"] +
       values["cls/predictions/transform/LayerNorm/beta"])
  # The output layer is the word embedding table passed in (tied weights).
  log_probs = _np_log_softmax(
      h @ table.T + values["cls/predictions/output_bias"])
  example_loss = -log_probs[np.arange(batch * num_pred), label_ids.reshape(-1)]
  w = weights.reshape(-1)
  np.testing.assert_allclose(mlm_log_probs, log_probs, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(mlm_example_loss, example_loss, rtol=1e-4)
  np.testing.assert_allclose(
      mlm_loss, (w * example_loss).sum() / (w.sum() + 1e-5), rtol=1e-4)

  sop_lp = _np_log_softmax(
      pooled @ values["cls/seq_relationship/output_weights"].T +
      values["cls/seq_relationship/output_bias"])
  np.testing.assert_allclose(sop_log_probs, sop_lp, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(sop_example_loss, -sop_lp[np.arange(batch), order],
                             rtol=1e-4)
  np.testing.assert_allclose(sop_loss, -sop_lp[np.arange(batch), order].mean(),
                             rtol=1e-4)


def _expected_shape(spec, config):
  sizes = {"hidden": config.hidden_size, "embedding": config.embedding_size,
           "vocab": config.vocab_size}
  return [sizes.get(d, d) for d in spec]


def test_model_fn_variables_heads_named_as_upstream_and_output_tied(config):
  records = _synthetic_records(2)
  with tf.Graph().as_default():
    model_fn = rp.model_fn_builder(config, None, 1e-3, 10, 2, False, False,
                                   "lamb", 1.0, 0)
    spec = model_fn(_constant_features(records), None, TRAIN, {})
    shapes = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()}
  for name, dims in CLS_VARIABLES.items():
    assert shapes[name] == _expected_shape(dims, config), name
  assert isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec)
  # Tied output layer: the only vocab-sized parameters are the input
  # embedding table and the output bias.
  vocab_sized = sorted(n for n, s in shapes.items() if config.vocab_size in s)
  assert vocab_sized == ["bert/embeddings/word_embeddings",
                         "cls/predictions/output_bias"]
  assert all(n.startswith(("bert/", "cls/")) for n in shapes)


# ---------------------------------------------------------------------------
# TPU branch, short of a TPU device.


@pytest.fixture(scope="module")
def head_checkpoint(tmp_path_factory, config):
  """A checkpoint with encoder and cls/ heads, all with random values."""
  path = str(tmp_path_factory.mktemp("ckpt") / "model.ckpt")
  records = _synthetic_records(2)
  with tf.Graph().as_default(), tf.Session() as sess:
    model_fn = rp.model_fn_builder(config, None, 1e-3, 10, 2, False, False,
                                   "lamb", 1.0, 0)
    model_fn(_constant_features(records), None, EVAL, {})
    sess.run(tf.global_variables_initializer())
    rng = np.random.RandomState(5)
    for var in tf.trainable_variables():
      var.load(rng.randn(*var.shape.as_list()).astype(np.float32) * 0.1, sess)
    tf.train.Saver(tf.trainable_variables()).save(sess, path)
  return path


def _assert_restored(sess, checkpoint):
  reader = tf.train.load_checkpoint(checkpoint)
  tvars = tf.trainable_variables()
  assert len(tvars) == len(reader.get_variable_to_shape_map())
  for var, value in zip(tvars, sess.run(tvars)):
    np.testing.assert_array_equal(value, reader.get_tensor(var.op.name),
                                  err_msg=var.op.name)


def _initial_values(graph, variables):
  """Runs the initialisers of `variables` in a copy of just the ops they need.

  A session cannot even load the TPU train graph on CPU: its CrossReplicaSum
  ops have no CPU kernel.
  """
  with graph.as_default():
    init = tf.variables_initializer(variables)
    reads = [tf.identity(v) for v in variables]
  needed = tf.graph_util.extract_sub_graph(
      graph.as_graph_def(), [init.name] + [r.op.name for r in reads])
  with tf.Graph().as_default():
    tf.import_graph_def(needed, name="")
    with tf.Session() as sess:
      sess.run(init.name)
      return sess.run([r.name for r in reads])


def test_tpu_train_spec_scaffold_restores_and_cross_shard(config,
                                                          head_checkpoint):
  records = _synthetic_records(4)
  reader = tf.train.load_checkpoint(head_checkpoint)
  with tf.Graph().as_default() as graph:
    model_fn = rp.model_fn_builder(config, head_checkpoint, 1e-3, 10, 2, True,
                                   True, "lamb", 1.0, 0)
    spec = model_fn(_constant_features(records), None, TRAIN,
                    {"batch_size": 4})
    tvars = tf.trainable_variables()
  assert isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec)
  assert spec.train_op is not None and spec.eval_metrics is None
  # CrossShardOptimizer sums every gradient across replicas.
  sums = [op for op in graph.get_operations() if op.type == "CrossReplicaSum"]
  assert len(sums) >= len(tvars)
  assert len(tvars) == len(reader.get_variable_to_shape_map())
  # On TPU the restore is deferred into scaffold_fn: before it runs, the
  # variables initialise at random.
  values = dict(zip([v.op.name for v in tvars], _initial_values(graph, tvars)))
  name = "bert/embeddings/word_embeddings"
  assert not np.array_equal(values[name], reader.get_tensor(name))
  with graph.as_default():
    scaffold = spec.scaffold_fn()
  assert isinstance(scaffold, tf.train.Scaffold)
  for var, value in zip(tvars, _initial_values(graph, tvars)):
    np.testing.assert_array_equal(value, reader.get_tensor(var.op.name),
                                  err_msg=var.op.name)


def test_tpu_eval_spec_metrics_pair_matches_numpy(config, head_checkpoint):
  records = _synthetic_records(4, seed=1)
  with tf.Graph().as_default():
    model_fn = rp.model_fn_builder(config, head_checkpoint, 1e-3, 10, 2, True,
                                   True, "lamb", 1.0, 0)
    spec = model_fn(_constant_features(records), None, EVAL, {"batch_size": 4})
    assert isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec)
    metric_fn, tensors = spec.eval_metrics
    assert callable(metric_fn) and len(tensors) == 7
    assert callable(spec.scaffold_fn)
    spec.scaffold_fn()
    metrics = metric_fn(*tensors)
    assert sorted(metrics) == sorted(rp.EVAL_KEYS[2:])
    with tf.Session() as sess:
      sess.run([tf.global_variables_initializer(),
                tf.local_variables_initializer()])
      _assert_restored(sess, head_checkpoint)
      values, loss, _ = sess.run(
          [tensors, spec.loss, {k: m[1] for k, m in metrics.items()}])
      got = sess.run({k: m[0] for k, m in metrics.items()})

  (mlm_example_loss, mlm_log_probs, mlm_ids, mlm_weights, sop_example_loss,
   sop_log_probs, sop_labels) = values
  w = mlm_weights.reshape(-1)
  mlm_correct = mlm_log_probs.argmax(-1) == mlm_ids.reshape(-1)
  sop_correct = sop_log_probs.argmax(-1) == sop_labels.reshape(-1)
  np.testing.assert_allclose(got["masked_lm_accuracy"],
                             (w * mlm_correct).sum() / w.sum(), rtol=1e-6)
  np.testing.assert_allclose(got["masked_lm_loss"],
                             (w * mlm_example_loss).sum() / w.sum(), rtol=1e-5)
  np.testing.assert_allclose(got["sentence_order_accuracy"],
                             sop_correct.mean(), rtol=1e-6)
  np.testing.assert_allclose(got["sentence_order_loss"],
                             sop_example_loss.mean(), rtol=1e-5)
  np.testing.assert_allclose(
      loss, (w * mlm_example_loss).sum() / (w.sum() + 1e-5) +
      sop_example_loss.mean(), rtol=1e-5)


@pytest.mark.parametrize("init_from_group0", [True, False])
def test_init_from_group0_copies_group_0_into_every_group(
    config, head_checkpoint, init_from_group0):
  two_groups = modeling.AlbertConfig.from_dict(
      dict(config.to_dict(), num_hidden_groups=2))
  reader = tf.train.load_checkpoint(head_checkpoint)
  records = _synthetic_records(2)
  with tf.Graph().as_default(), tf.Session() as sess:
    model_fn = rp.model_fn_builder(two_groups, head_checkpoint, 1e-3, 10, 2,
                                   False, False, "lamb", 1.0, 0,
                                   init_from_group0=init_from_group0)
    model_fn(_constant_features(records), None, EVAL, {})
    sess.run(tf.global_variables_initializer())
    values = {v.op.name: value for v, value in
              zip(tf.trainable_variables(), sess.run(tf.trainable_variables()))}
  group_1 = [n for n in values if "/group_1/" in n]
  assert group_1
  for name in group_1:
    source = reader.get_tensor(name.replace("/group_1/", "/group_0/"))
    assert np.array_equal(values[name], source) == init_from_group0, name
  for name, value in values.items():
    if "/group_1/" not in name:
      np.testing.assert_array_equal(value, reader.get_tensor(name))


# ---------------------------------------------------------------------------
# Input pipeline.


def _batches(dataset, num):
  with tf.Session() as sess:
    next_batch = tf.data.make_one_shot_iterator(dataset).get_next()
    return [sess.run(next_batch) for _ in range(num)]


def test_input_fn_batch_size_drop_remainder_and_int32(tmp_path):
  path = str(tmp_path / "ten.tfrecord")
  records = _write_synthetic(path, 10)
  for is_training in (True, False):
    with tf.Graph().as_default():
      input_fn = rp.input_fn_builder([path], SEQ_LEN, MAX_PRED, is_training)
      dataset = input_fn({"batch_size": 3})
      # Static batch dimension (drop_remainder), as the TPU requires.
      spec = dataset.element_spec
      assert spec["input_ids"].shape.as_list() == [3, SEQ_LEN]
      assert spec["masked_lm_positions"].shape.as_list() == [3, MAX_PRED]
      assert spec["next_sentence_labels"].shape.as_list() == [3, 1]
      assert spec["masked_lm_weights"].dtype == tf.float32
      for name in ("input_ids", "input_mask", "segment_ids",
                   "masked_lm_positions", "masked_lm_ids",
                   "next_sentence_labels"):
        assert spec[name].dtype == tf.int32, name
      batches = _batches(dataset, 5)  # 15 rows of 10 records: repeats.
    rows = [{k: b[k][i].tolist() for k in b} for b in batches for i in range(3)]
    expected = [{k: [float(x) if k == "masked_lm_weights" else int(x)
                     for x in v] for k, v in r.items()} for r in records]
    if is_training:
      for row in rows:
        assert row in expected
    else:
      # Eval reads in file order and wraps around.
      assert rows == (expected + expected)[:15]


# ---------------------------------------------------------------------------
# Bad input, checked before anything is built.


def test_expand_input_files_errors_name_the_pattern(tmp_path):
  good = tmp_path / "a.tfrecord"
  good.write_bytes(b"")
  assert rp.expand_input_files(str(tmp_path / "*.tfrecord")) == [str(good)]
  missing = str(tmp_path / "nope-*.tfrecord")
  with pytest.raises(rp.PretrainingInputError, match="nope-"):
    rp.expand_input_files("%s,%s" % (good, missing))
  with pytest.raises(rp.PretrainingInputError, match="empty"):
    rp.expand_input_files(" , ")


def test_check_input_file_reports_file_and_problem(tmp_path):
  good = str(tmp_path / "good.tfrecord")
  _write_synthetic(good, 2)
  rp.check_input_file(good, SEQ_LEN, MAX_PRED)

  empty = str(tmp_path / "empty.tfrecord")
  open(empty, "wb").close()
  with pytest.raises(rp.PretrainingInputError,
                     match=re.escape(empty) + ".*no records"):
    rp.check_input_file(empty, SEQ_LEN, MAX_PRED)

  corrupt = str(tmp_path / "corrupt.tfrecord")
  with open(corrupt, "wb") as f:
    f.write(b"this is plain text, not a TFRecord file\n" * 4)
  with pytest.raises(rp.PretrainingInputError,
                     match=re.escape(corrupt) + ": record 1"):
    rp.check_input_file(corrupt, SEQ_LEN, MAX_PRED)

  with pytest.raises(rp.PretrainingInputError,
                     match="'input_ids' has 64 .*expected 128.*max_seq_length"):
    rp.check_input_file(good, 128, MAX_PRED)
  with pytest.raises(rp.PretrainingInputError,
                     match="'masked_lm_\\w+' has 10 .*expected 20"):
    rp.check_input_file(good, SEQ_LEN, 20)


def test_seq_length_above_max_position_embeddings(config):
  modeling.check_seq_length(config.max_position_embeddings, config)
  with pytest.raises(rp.PretrainingInputError,
                     match="max_seq_length=513 exceeds max_position_embed"):
    modeling.check_seq_length(config.max_position_embeddings + 1, config,
                              error_cls=rp.PretrainingInputError)


def test_script_bad_input_exits_non_zero_without_output(tmp_path):
  data = str(tmp_path / "data.tfrecord")
  _write_synthetic(data, 4)
  script = [sys.executable, SCRIPT, "--albert_config_file=" + TINY_CONFIG,
            "--max_predictions_per_seq=%d" % MAX_PRED, "--num_train_steps=1"]
  cases = {
      "glob": (script + ["--input_file=" + str(tmp_path / "missing-*.rec"),
                         "--max_seq_length=%d" % SEQ_LEN],
               "%r matches no file" % str(tmp_path / "missing-*.rec")),
      "seq": (script + ["--input_file=" + data, "--max_seq_length=1024"],
              "max_seq_length=1024 exceeds max_position_embeddings=512"),
      # The recipe wrapper, run elsewhere with relative paths: they must
      # reach the script made absolute.
      "recipe": (["bash", os.path.join(ROOT, "bio", "recipes", "pretrain.sh"),
                  "bioalbert_1.0_base_pubmed.flags", "missing-*.rec",
                  "out_recipe", "albert_base/model.ckpt"],
                 "%r matches no file" % str(tmp_path / "missing-*.rec")),
  }
  env = dict(_env(), PYTHON=sys.executable)
  procs = {}
  for name, (command, _) in cases.items():
    if name != "recipe":
      command = command + ["--output_dir=" + str(tmp_path / ("out_" + name))]
    procs[name] = subprocess.Popen(
        command, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
  for name, proc in procs.items():
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, log
    assert cases[name][1] in log, log[-2000:]
    assert "Traceback" not in log
    assert not os.path.exists(str(tmp_path / ("out_" + name)))


def test_recipe_wrapper_keeps_albert_vocabulary(tmp_path):
  """pretrain.sh passes the 30k-clean.model shipped beside the ALBERT
  checkpoint as --spm_model_file, unless the caller gives one."""
  albert_dir = tmp_path / "albert_base"
  albert_dir.mkdir()
  (albert_dir / "30k-clean.model").write_bytes(b"spm")
  fake = tmp_path / "fake_python.sh"
  fake.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
  fake.chmod(0o755)
  wrapper = os.path.join(ROOT, "bio", "recipes", "pretrain.sh")

  def argv(*extra):
    proc = subprocess.run(
        ["bash", wrapper, "bioalbert_1.0_base_pubmed.flags", "in/*.rec",
         "out", "albert_base/model.ckpt-best", *extra], cwd=str(tmp_path),
        env=dict(os.environ, PYTHON=str(fake)), capture_output=True,
        text=True, timeout=60, check=True)
    return proc.stdout.split("\n")

  expected = "--spm_model_file=%s" % (albert_dir / "30k-clean.model")
  assert expected in argv()
  given = argv("--spm_model_file=mine.model")
  assert expected not in given and "--spm_model_file=mine.model" in given


# ---------------------------------------------------------------------------
# Recipes: every flagfile parses with the script's real flags.

RECIPES = {
    "bioalbert_1.0_base_pubmed.flags": (0.00176, 1024, 200000, "base"),
    "bioalbert_1.0_base_pubmed_pmc.flags": (0.00176, 1024, 470000, "base"),
    "bioalbert_1.1_large_pubmed.flags": (0.00062, 256, 200000, "large"),
    "bioalbert_1.1_large_pubmed_pmc.flags": (0.00062, 256, 470000, "large"),
}

_PARSE_RECIPES = """
import json, sys
import run_pretraining
from absl import flags
out = {}
for path in sys.argv[1:]:
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["run_pretraining.py", "--flagfile=" + path])
  out[path] = {name: flags.FLAGS[name].value for name in (
      "albert_config_file", "optimizer", "learning_rate", "train_batch_size",
      "num_warmup_steps", "num_train_steps", "max_seq_length",
      "max_predictions_per_seq", "do_train", "use_tpu")}
print("RECIPES=" + json.dumps(out))
"""


def test_recipes_parse_with_the_real_flags():
  recipe_dir = os.path.join(ROOT, "bio", "recipes")
  shipped = sorted(f for f in os.listdir(recipe_dir) if f.endswith(".flags"))
  assert shipped == sorted(RECIPES)
  paths = [os.path.join(recipe_dir, name) for name in shipped]
  proc = subprocess.run([sys.executable, "-c", _PARSE_RECIPES] + paths,
                        cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  parsed = json.loads(proc.stdout.split("RECIPES=", 1)[1])
  sizes = {"base": 768, "large": 1024}
  for name, (lr, batch, steps, size) in RECIPES.items():
    values = parsed[os.path.join(recipe_dir, name)]
    assert values["optimizer"] == "lamb"
    assert values["learning_rate"] == lr
    assert values["train_batch_size"] == batch
    assert values["num_train_steps"] == steps
    assert values["num_warmup_steps"] == 3125
    assert values["max_seq_length"] == 512
    assert values["max_predictions_per_seq"] == 20
    assert values["do_train"] is True and values["use_tpu"] is False
    # The config path is relative to the repository root and must load.
    recipe_config = modeling.AlbertConfig.from_json_file(
        os.path.join(ROOT, values["albert_config_file"]))
    assert recipe_config.hidden_size == sizes[size]
    assert recipe_config.max_position_embeddings >= values["max_seq_length"]


# ---------------------------------------------------------------------------
# End to end: real PubMed text -> SentencePiece -> TFRecords -> the script.


def _pubmed_documents(path, limit):
  """Abstracts of a PubMed XML file, each a list of sentences."""
  with gzip.open(path) as f:
    root = ET.parse(f).getroot()
  documents = []
  for abstract in root.iter("Abstract"):
    text = " ".join("".join(node.itertext())
                    for node in abstract.iter("AbstractText"))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip())
                 if s]
    if len(sentences) >= 2:
      documents.append(sentences)
    if len(documents) == limit:
      break
  return documents


@pytest.fixture(scope="module")
def pretraining_records(tmp_path_factory, pubmed_dir, spm_model_file, config):
  """TFRecords made by albert.create_pretraining_data from 200 PubMed
  abstracts, tokenized with the shared 1000-piece SentencePiece model."""
  work = tmp_path_factory.mktemp("pretrain_data")
  documents = _pubmed_documents(
      os.path.join(pubmed_dir, "pubmed-sample-0001.xml.gz"), limit=200)
  corpus = str(work / "corpus.txt")
  with open(corpus, "w", encoding="utf-8") as f:
    for sentences in documents:
      f.write("\n".join(sentences) + "\n\n")
  tokenizer = tokenization.FullTokenizer(
      vocab_file=None, do_lower_case=True, spm_model_file=spm_model_file)
  assert len(tokenizer.vocab) == config.vocab_size
  output = str(work / "pubmed.tfrecord")
  options = cpd.DataOptions(max_seq_length=SEQ_LEN,
                            max_predictions_per_seq=MAX_PRED, dupe_factor=2)
  count = cpd.run_single_process([corpus], [output], tokenizer,
                                 random_seed=12345, options=options,
                                 num_logged_examples=0)
  assert count > 200
  return output


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory, pretraining_records):
  """Three runs: a short one, then at once its resumption and a fresh run
  initialised from (a copy of) its checkpoint."""
  work = tmp_path_factory.mktemp("runs")
  out = str(work / "out")
  common = ["--albert_config_file=" + TINY_CONFIG,
            "--input_file=" + pretraining_records,
            "--max_seq_length=%d" % SEQ_LEN,
            "--max_predictions_per_seq=%d" % MAX_PRED,
            "--train_batch_size=16", "--eval_batch_size=16",
            "--max_eval_steps=8", "--num_warmup_steps=0",
            "--iterations_per_loop=10", "--save_checkpoints_steps=1000"]
  runs = {"out": out, "first_steps": 2, "resumed_steps": 60}
  rc, log = _run_script(*common, "--output_dir=" + out, "--do_eval",
                        "--optimizer=adamw", "--learning_rate=0.005",
                        "--num_train_steps=2")
  assert rc == 0, log[-5000:]
  runs["first_log"] = log
  runs["first_results"] = _read_eval_results(
      os.path.join(out, "eval_results.txt"))

  # The init run reads a copy, so that the resumed run beside it cannot
  # touch its checkpoint.
  init_from = work / "init_from"
  init_from.mkdir()
  for path in tf.io.gfile.glob(os.path.join(out, "model.ckpt-2.*")):
    shutil.copy(path, str(init_from))
  runs["init_from"] = str(init_from / "model.ckpt-2")
  resumed = _start_script(*common, "--output_dir=" + out, "--do_eval",
                          "--optimizer=adamw", "--learning_rate=0.005",
                          "--num_train_steps=60")
  # Learning rate 0: after one step every weight must still equal the
  # checkpoint it was initialised from.
  init_out = str(work / "init")
  runs["init_out"] = init_out
  init = _start_script(*common, "--output_dir=" + init_out,
                       "--init_checkpoint=" + runs["init_from"],
                       "--optimizer=lamb", "--learning_rate=0",
                       "--num_train_steps=1")
  rc, log = _finish(resumed)
  assert rc == 0, log[-5000:]
  runs["resumed_log"] = log
  runs["resumed_results"] = _read_eval_results(
      os.path.join(out, "eval_results.txt"))
  rc, log = _finish(init)
  assert rc == 0, log[-5000:]
  runs["init_log"] = log
  return runs


def test_multi_worker_script_trains_and_the_chief_evaluates(
    tmp_path, pretraining_records):
  """Two worker processes of run_pretraining.py on localhost share one
  --output_dir: the chief checkpoints and evaluates, worker 1 only trains."""
  out = str(tmp_path / "out")
  args = ["--albert_config_file=" + TINY_CONFIG,
          "--input_file=" + pretraining_records, "--output_dir=" + out,
          "--max_seq_length=%d" % SEQ_LEN,
          "--max_predictions_per_seq=%d" % MAX_PRED, "--do_eval",
          "--train_batch_size=16", "--eval_batch_size=16",
          "--max_eval_steps=2", "--num_train_steps=6",
          "--num_warmup_steps=0", "--iterations_per_loop=3",
          "--distribution=multi_worker"]
  procs = [_start_script(*args, environ={"TF_CONFIG": config})
           for config in cluster.local_workers(2)]
  try:
    (rc0, chief), (rc1, worker) = [_finish(p) for p in procs]
  finally:
    for p in procs:
      p.kill()
  assert rc0 == 0, chief[-5000:]
  assert rc1 == 0, worker[-5000:]
  assert "worker 0 of 2 tasks (chief), 2 replicas in sync" in chief
  assert "worker 1 of 2 tasks, 2 replicas in sync" in worker
  results = _read_eval_results(os.path.join(out, "eval_results.txt"))
  assert results["global_step"] == 6
  assert "Saving dict for global step" not in worker
  assert tf.train.latest_checkpoint(out).endswith("model.ckpt-6")
  assert os.path.isdir(os.path.join(out, "tmp_worker_1"))


def test_eval_results_has_the_six_keys(script_runs):
  for key in ("first_results", "resumed_results"):
    results = script_runs[key]
    assert sorted(results) == sorted(rp.EVAL_KEYS)
    for name in ("masked_lm_accuracy", "sentence_order_accuracy"):
      assert 0.0 <= results[name] <= 1.0
    assert results["loss"] == pytest.approx(
        results["masked_lm_loss"] + results["sentence_order_loss"], rel=0.02)
  assert script_runs["first_results"]["global_step"] == 2
  assert script_runs["resumed_results"]["global_step"] == 60
  leftovers = [f for f in os.listdir(script_runs["out"]) if ".tmp-" in f]
  assert not leftovers
  assert os.path.exists(
      os.path.join(script_runs["out"], "model.ckpt-best.index"))


def test_loss_goes_down(script_runs):
  first = script_runs["first_results"]
  resumed = script_runs["resumed_results"]
  # Near-uniform at the start: ln(vocab) for the MLM head.
  assert first["masked_lm_loss"] > math.log(1000) - 1.0
  assert resumed["masked_lm_loss"] < first["masked_lm_loss"] - 0.5
  assert resumed["loss"] < first["loss"] - 0.5


def test_rerun_resumes_from_saved_step(script_runs):
  first_log, log = script_runs["first_log"], script_runs["resumed_log"]
  assert "Saving checkpoints for 0 into" in first_log
  assert "Restoring parameters from %s/model.ckpt-2" % script_runs["out"] in log
  assert "Saving checkpoints for 0 into" not in log
  assert "Saving checkpoints for 60 into" in log
  # Mean loss, steps/s, examples/s and ETA from the throughput hook.
  assert re.search(r"step \d+/60: loss [\d.]+, [\d.]+ steps/s, "
                   r"[\d.]+ examples/s, ETA ",
                   log)


def _checkpoint_values(directory):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(directory))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def test_seed_repeats_a_run_and_another_seed_does_not(tmp_path,
                                                      pretraining_records):
  """Two runs with --seed=7 write equal weights; --seed=8 other ones. With
  dropout on, so that its masks must repeat too."""
  with open(TINY_CONFIG) as f:
    dropout_config = dict(json.load(f), hidden_dropout_prob=0.1,
                          attention_probs_dropout_prob=0.1)
  config_file = tmp_path / "dropout.json"
  config_file.write_text(json.dumps(dropout_config))
  common = ["--albert_config_file=" + str(config_file),
            "--input_file=" + pretraining_records,
            "--max_seq_length=%d" % SEQ_LEN,
            "--max_predictions_per_seq=%d" % MAX_PRED,
            "--train_batch_size=8", "--num_warmup_steps=0",
            "--optimizer=adamw", "--learning_rate=0.01",
            "--num_train_steps=3", "--iterations_per_loop=10"]
  procs = {name: _start_script(*common, "--seed=%d" % seed,
                               "--output_dir=" + str(tmp_path / name))
           for name, seed in (("a", 7), ("b", 7), ("c", 8))}
  for name, proc in procs.items():
    rc, log = _finish(proc)
    assert rc == 0, log[-5000:]
  a, b, c = (_checkpoint_values(str(tmp_path / n)) for n in "abc")
  assert a["global_step"] == 3
  weights = [n for n in a if n.startswith(("bert/", "cls/"))
             and "adam" not in n]
  assert len(weights) > 20
  for name in weights:
    assert np.array_equal(a[name], b[name]), name
  assert not np.array_equal(a["bert/embeddings/word_embeddings"],
                            c["bert/embeddings/word_embeddings"])


def test_seeded_training_input_repeats_its_order(tmp_path):
  paths = []
  for i in range(3):
    paths.append(str(tmp_path / ("part-%d.tfrecord" % i)))
    _write_synthetic(paths[-1], 10, seed=i)

  def order(seed):
    with tf.Graph().as_default():
      dataset = rp.input_fn_builder(paths, SEQ_LEN, MAX_PRED, True,
                                    seed=seed)({"batch_size": 4})
      return [b["input_ids"].tolist() for b in _batches(dataset, 12)]

  first = order(5)
  assert order(5) == first
  assert order(6) != first


def test_seeded_order_continues_after_skipped_batches(tmp_path):
  paths = []
  for i in range(3):
    paths.append(str(tmp_path / ("part-%d.tfrecord" % i)))
    _write_synthetic(paths[-1], 10, seed=i)

  def order(skip, count):
    with tf.Graph().as_default():
      dataset = rp.input_fn_builder(paths, SEQ_LEN, MAX_PRED, True, seed=5,
                                    skip_batches=skip)({"batch_size": 4})
      return [b["input_ids"].tolist() for b in _batches(dataset, count)]

  assert order(5, 7) == order(0, 12)[5:]


def test_seeded_skip_counts_the_restored_step(tmp_path):
  prefix = str(tmp_path / "model.ckpt-3")
  with tf.Graph().as_default():
    step = tf.train.get_or_create_global_step()
    with tf.Session() as sess:
      sess.run(tf.assign(step, 3))
      tf.train.Saver().save(sess, prefix)
  options = rp.PretrainingOptions(albert_config_file="c", input_file="i",
                                  output_dir=str(tmp_path), seed=7)
  assert rp.seeded_skip_batches(options, prefix) == 3
  assert rp.seeded_skip_batches(options, None) == 0
  accumulating = dataclasses.replace(
      options, training=precision.TrainingOptions(
          gradient_accumulation_steps=2))
  assert rp.seeded_skip_batches(accumulating, prefix) == 6
  unseeded = dataclasses.replace(options, seed=None)
  assert rp.seeded_skip_batches(unseeded, prefix) == 0


def test_stop_at_step_then_continue_equals_one_run(tmp_path,
                                                   pretraining_records):
  """A seeded run stopped at step 2 of a 4-step schedule, then continued
  with the same flags, ends with the weights of one uninterrupted run (the
  tiny config has no dropout, whose masks would not repeat across a
  restart): the resumed run skipped the batches it had read, no more."""
  common = ["--albert_config_file=" + TINY_CONFIG,
            "--input_file=" + pretraining_records,
            "--max_seq_length=%d" % SEQ_LEN,
            "--max_predictions_per_seq=%d" % MAX_PRED,
            "--train_batch_size=8", "--num_warmup_steps=1",
            "--optimizer=lamb", "--learning_rate=0.01",
            "--num_train_steps=4", "--iterations_per_loop=10", "--seed=7"]
  whole = _start_script(*common, "--output_dir=" + str(tmp_path / "whole"))
  rc, log = _run_script(*common, "--output_dir=" + str(tmp_path / "parts"),
                        "--stop_at_step=2")
  assert rc == 0, log[-5000:]
  assert "Stopping at step 2 of the 4-step schedule" in log
  assert "skipping" not in log
  assert _checkpoint_values(str(tmp_path / "parts"))["global_step"] == 2
  rc, log = _run_script(*common, "--output_dir=" + str(tmp_path / "parts"))
  assert rc == 0, log[-5000:]
  assert "Resuming a seeded run: skipping the 2 batches it has read" in log
  rc, log = _finish(whole)
  assert rc == 0, log[-5000:]
  parts, one = (_checkpoint_values(str(tmp_path / n))
                for n in ("parts", "whole"))
  assert parts["global_step"] == one["global_step"] == 4
  weights = [n for n in one if n.startswith(("bert/", "cls/"))]
  assert len(weights) > 20
  for name in weights:
    np.testing.assert_allclose(parts[name], one[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)


def test_stop_at_step_outside_the_schedule_is_refused(tmp_path,
                                                       pretraining_records):
  rc, log = _run_script("--albert_config_file=" + TINY_CONFIG,
                        "--input_file=" + pretraining_records,
                        "--output_dir=" + str(tmp_path / "out"),
                        "--max_seq_length=%d" % SEQ_LEN,
                        "--max_predictions_per_seq=%d" % MAX_PRED,
                        "--num_train_steps=4", "--stop_at_step=5")
  assert rc != 0
  assert ("--stop_at_step=5 must be between 1 and --num_train_steps=4"
          in log.strip().splitlines()[-1])
  assert "Traceback" not in log
  assert not os.path.exists(str(tmp_path / "out"))


def test_init_checkpoint_restores_encoder_and_heads(script_runs):
  log = script_runs["init_log"]
  # Every trainable variable is logged, marked as restored or fresh.
  logged = set(re.findall(r"name = (\S+):0, shape = ", log))
  restored = set(re.findall(
      r"name = (\S+):0, shape = [^\n]*\*INIT_FROM_CKPT\*", log))
  assert "*FRESH*" not in log
  assert logged and restored == logged
  assert set(CLS_VARIABLES) <= restored
  assert any(n.startswith("bert/encoder/") for n in restored)
  m = re.search(r"Restored (\d+) of (\d+) trainable variables", log)
  assert m and m.group(1) == m.group(2) == str(len(logged))
  # Learning rate 0: one step later the weights are the initial checkpoint's.
  before = tf.train.load_checkpoint(script_runs["init_from"])
  after = tf.train.load_checkpoint(
      os.path.join(script_runs["init_out"], "model.ckpt-1"))
  for name in sorted(logged):
    np.testing.assert_array_equal(after.get_tensor(name),
                                  before.get_tensor(name), err_msg=name)


# ---------------------------------------------------------------------------
# Hardening (issue 11): each bad case stops before training with one line.


def _other_config_checkpoint(directory, config):
  """A checkpoint of the tiny model with embedding_size + 8, saved as a
  training run would (model.ckpt-1 plus the `checkpoint` file)."""
  other = modeling.AlbertConfig.from_dict(
      dict(config.to_dict(), embedding_size=config.embedding_size + 8))
  with tf.Graph().as_default():
    ids = tf.zeros([1, 8], tf.int32)
    modeling.AlbertModel(config=other, is_training=False, input_ids=ids)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      tf.train.Saver().save(sess, os.path.join(directory, "model.ckpt"),
                            global_step=1)
  return other


def test_script_hardening_errors_and_stale_lock(tmp_path, config, dead_pid):
  data = str(tmp_path / "data.tfrecord")
  records = _write_synthetic(data, 40)
  with open(data, "rb") as f:
    raw = f.read()
  truncated = str(tmp_path / "truncated.tfrecord")
  with open(truncated, "wb") as f:
    f.write(raw[:len(raw) - 100])
  big_ids = str(tmp_path / "big_ids.tfrecord")
  with tf.io.TFRecordWriter(big_ids) as writer:
    for i, features in enumerate(records):
      features = dict(features)
      if i == 30:
        features["input_ids"] = [config.vocab_size + 7] + features[
            "input_ids"][1:]
      writer.write(_to_example(features).SerializeToString())
  dirs = {name: tmp_path / name for name in ("locked", "shapes", "stale")}
  for directory in dirs.values():
    directory.mkdir()
  # A live process (this one) holds "locked"; a dead one held "stale".
  host = socket.gethostname()
  (dirs["locked"] / ".lock").write_text("%s %d\n" % (host, os.getpid()))
  (dirs["stale"] / ".lock").write_text("%s %d\n" % (host, dead_pid))
  other = _other_config_checkpoint(str(dirs["shapes"]), config)

  script = [sys.executable, SCRIPT, "--albert_config_file=" + TINY_CONFIG,
            "--max_seq_length=%d" % SEQ_LEN, "--num_warmup_steps=0",
            "--max_predictions_per_seq=%d" % MAX_PRED, "--num_train_steps=1",
            "--train_batch_size=4", "--iterations_per_loop=1"]
  # The script, for a lock (live and stale): its exit status and one-line
  # error for a PretrainingInputError raised by run().
  cases = {
      "locked": (data, "is in use by another run (pid %d" % os.getpid()),
      "stale": (data, "taking over the stale lock %s" % (
          dirs["stale"] / ".lock")),
  }
  procs = {}
  for name, (input_file, _) in cases.items():
    procs[name] = subprocess.Popen(
        script + ["--input_file=" + input_file,
                  "--output_dir=%s" % dirs[name]],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
  # The library, meanwhile, for the checks made before training: the same
  # settings, the same PretrainingInputError (each would be one line there).
  in_process = {
      "truncated": (truncated, "%s: truncated or corrupt TFRecord file"
                    % truncated),
      "big_ids": (big_ids, "%s: token id %d in input_ids is >= vocab_size %d"
                  % (big_ids, config.vocab_size + 7, config.vocab_size)),
      # The first mismatch in name order (LayerNorm spans embedding_size).
      "shapes": (data, "bert/embeddings/LayerNorm/beta has shape [%d] there "
                 "but [%d]" % (other.embedding_size, config.embedding_size)),
  }
  for name, (input_file, message) in in_process.items():
    options = rp.PretrainingOptions(
        albert_config_file=TINY_CONFIG, input_file=input_file,
        output_dir=str(dirs.get(name, tmp_path / ("out_" + name))),
        max_seq_length=SEQ_LEN, num_warmup_steps=0,
        max_predictions_per_seq=MAX_PRED, num_train_steps=1,
        train_batch_size=4, tpu=estimator_utils.TpuOptions(
            iterations_per_loop=1))
    with pytest.raises(rp.PretrainingInputError, match=re.escape(message)):
      rp.run(options)
  for name, proc in procs.items():
    log, _ = proc.communicate(timeout=300)
    assert cases[name][1] in log, (name, log[-3000:])
    assert "Traceback" not in log, (name, log[-3000:])
    if name == "stale":
      assert proc.returncode == 0, log[-3000:]
      assert os.path.exists(str(dirs["stale"] / "model.ckpt-1.index"))
      assert not os.path.exists(str(dirs["stale"] / ".lock"))
      continue
    assert proc.returncode != 0, (name, log[-3000:])
    assert len(re.findall(r"run_pretraining.py: error: ", log)) == 1, log
  # Nothing written: no new output directory, the others as they were.
  for name in ("truncated", "big_ids"):
    assert not os.path.exists(str(tmp_path / ("out_" + name)))
  assert os.listdir(str(dirs["locked"])) == [".lock"]
  assert sorted(os.listdir(str(dirs["shapes"]))) == [
      "checkpoint", "model.ckpt-1.data-00000-of-00001", "model.ckpt-1.index",
      "model.ckpt-1.meta"]


def test_eval_only_evaluates_what_exists_and_stops(tmp_path, script_runs,
                                                   pretraining_records):
  """--do_eval --nodo_train with the default num_train_steps (125000):
  upstream waits forever for checkpoints no run will write."""
  out = str(tmp_path / "out")
  shutil.copytree(script_runs["out"], out)
  os.remove(os.path.join(out, "eval_results.txt"))
  empty = str(tmp_path / "empty")
  os.mkdir(empty)
  common = ["--albert_config_file=" + TINY_CONFIG,
            "--input_file=" + pretraining_records,
            "--max_seq_length=%d" % SEQ_LEN,
            "--max_predictions_per_seq=%d" % MAX_PRED, "--eval_batch_size=16",
            "--max_eval_steps=2", "--do_eval", "--nodo_train"]
  procs = [subprocess.Popen(
      [sys.executable, SCRIPT] + common + ["--output_dir=" + d], cwd=ROOT,
      env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for d in (out, empty)]
  # A hang is the bug: the guard only keeps a failing run from blocking.
  logs = [p.communicate(timeout=240)[0] for p in procs]
  assert procs[0].returncode == 0, logs[0][-3000:]
  results = _read_eval_results(os.path.join(out, "eval_results.txt"))
  assert results["global_step"] == 60
  assert procs[1].returncode != 0, logs[1][-3000:]
  assert ("--output_dir %s holds no checkpoint to evaluate" % empty) in logs[1]
  assert "Traceback" not in logs[1]
  assert os.listdir(empty) == []
