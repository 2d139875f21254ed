"""Precision, gradient accumulation, loss scaling and replicas (CPU).

Each faster or larger path is checked against the reference path: the
float32, single-device, one-batch-per-update train op of upstream.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import modeling
from albert import optimization
from albert import precision
from albert import run_pretraining as rp
from tests.albert import cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TINY_CONFIG = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
SEQ_LEN = 32
MAX_PRED = 6


def _config():
  config = modeling.AlbertConfig.from_json_file(TINY_CONFIG)
  config.hidden_dropout_prob = 0.0
  config.attention_probs_dropout_prob = 0.0
  config.vocab_size = 500
  return config


def random_batch(rng, batch, vocab=500):
  """Pretraining features with MAX_PRED weighted positions per example."""
  lengths = rng.randint(MAX_PRED + 3, SEQ_LEN + 1, batch)
  mask = (np.arange(SEQ_LEN)[None, :] < lengths[:, None]).astype(np.int32)
  positions = np.stack([np.sort(rng.choice(np.arange(1, n - 1), MAX_PRED,
                                           replace=False)) for n in lengths])
  return {
      "input_ids": rng.randint(5, vocab, (batch, SEQ_LEN)) * mask,
      "input_mask": mask,
      "segment_ids": (np.arange(SEQ_LEN)[None, :] >= 10) * mask,
      "masked_lm_positions": positions,
      "masked_lm_ids": rng.randint(5, vocab, (batch, MAX_PRED)),
      "masked_lm_weights": np.ones((batch, MAX_PRED), np.float32),
      "next_sentence_labels": rng.randint(0, 2, (batch, 1)),
  }


def _placeholders(arrays):
  return {k: tf.placeholder(tf.float32 if v.dtype == np.float32 else
                            tf.int32, (None,) + v.shape[1:])
          for k, v in arrays.items()}


def train(batches, train_options=None, optimizer="lamb", compute_dtype=None,
          session_config=None, save_to=None, template=None, snapshots=None):
  """Runs one session.run per batch; returns ({var: value}, global step).

  `template` (a batch) shapes the graph when `batches` is empty.
  `snapshots` ({count: None}) is filled with the {var: value} after that
  many batches (0: the initial values), from the same graph."""
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(7)
    feeds = _placeholders(batches[0] if batches else template)
    model_fn = rp.model_fn_builder(
        _config(), None, 1e-3, 10, 0, use_tpu=False,
        use_one_hot_embeddings=False, optimizer=optimizer, poly_power=1.0,
        start_warmup_step=0, compute_dtype=compute_dtype or tf.float32,
        train_options=train_options)
    spec = model_fn(feeds, None, tf.estimator.ModeKeys.TRAIN, {})
    saver = tf.train.Saver()
    # One fetch for all variables: each new fetch set costs a graph prune.
    fetch = {v.op.name: v for v in tf.trainable_variables()}
    snapshots = {} if snapshots is None else snapshots
    with tf.Session(config=session_config) as sess:
      sess.run(tf.global_variables_initializer())
      for count, batch in enumerate([None] + list(batches)):
        if batch is not None:
          sess.run(spec.train_op, {feeds[k]: v for k, v in batch.items()})
        if count in snapshots:
          snapshots[count] = sess.run(fetch)
      values = sess.run(fetch)
      step = sess.run(tf.train.get_global_step())
      if save_to:
        saver.save(sess, save_to)
  return values, step


def _split(batch, parts):
  return [{k: v[i::parts] for k, v in batch.items()} for i in range(parts)]


def assert_close(got, want, atol=1e-5):
  assert sorted(got) == sorted(want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=0,
                               err_msg=name)


@pytest.mark.parametrize("optimizer", ["lamb", "adamw"])
def test_accumulation_equals_one_batch_k_times_larger(optimizer):
  rng = np.random.RandomState(0)
  big = [random_batch(rng, 8) for _ in range(3)]
  big_at = {0: None, 1: None}
  want, want_step = train(big, optimizer=optimizer, snapshots=big_at)
  micro = [m for b in big for m in _split(b, 4)]
  micro_at = {3: None}
  got, step = train(micro, optimization.TrainOptions(
      gradient_accumulation_steps=4), optimizer=optimizer,
                    snapshots=micro_at)
  assert (step, want_step) == (3, 3)  # the schedule counted 3 updates
  assert_close(got, want)
  # The first three micro-batches alone move nothing; one batch does.
  initial, before = big_at[0], big_at[1]
  assert_close(micro_at[3], initial, atol=0)
  gamma = "bert/encoder/transformer/group_0/inner_group_0/LayerNorm/gamma"
  assert not np.allclose(before[gamma], initial[gamma])


def test_loss_scale_in_checkpoint_equal_steps_and_overflow_skips(tmp_path):
  rng = np.random.RandomState(1)
  batches = [random_batch(rng, 4) for _ in range(2)]
  want, _ = train(batches)
  prefix = str(tmp_path / "model.ckpt")
  got, step = train(batches, optimization.TrainOptions(loss_scale=True),
                    save_to=prefix)
  # A power-of-two scale is exact in float32: the same steps.
  assert step == 2
  assert_close(got, want)
  saved = dict(tf.train.list_variables(prefix))
  assert saved["loss_scale/current"] == []
  reader = tf.train.load_checkpoint(prefix)
  assert reader.get_tensor("loss_scale/current") == 2.0 ** 15
  assert reader.get_tensor("loss_scale/good_steps") == 2


def test_overflow_skips_the_update_and_halves_the_scale():
  graph = tf.Graph()
  with graph.as_default():
    w = tf.get_variable("w", [2], initializer=tf.ones_initializer())
    factor = tf.placeholder(tf.float32, [])
    loss = tf.reduce_sum(w * factor)
    op = optimization.create_optimizer(
        loss, 0.1, 10, 0, False, "adamw",
        train_options=optimization.TrainOptions(loss_scale=True))
    scale = [v for v in tf.global_variables()
             if v.op.name == "loss_scale/current"][0]
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(op, {factor: 1e36})  # 1e36 * 2**15 overflows float32
      assert sess.run(scale) == 2.0 ** 14
      np.testing.assert_array_equal(sess.run(w), [1.0, 1.0])
      assert sess.run(tf.train.get_global_step()) == 0
      sess.run(op, {factor: 1.0})
      assert sess.run(tf.train.get_global_step()) == 1
      assert sess.run(w)[0] < 1.0


def _run_partition_graphs(config):
  """Op types and dtypes of the graph as run with `config`."""
  rng = np.random.RandomState(2)
  batch = random_batch(rng, 2)
  graph = tf.Graph()
  with graph.as_default():
    feeds = _placeholders(batch)
    model_fn = rp.model_fn_builder(
        _config(), None, 1e-3, 10, 2, False, False, "lamb", 1.0, 0)
    spec = model_fn(feeds, None, tf.estimator.ModeKeys.TRAIN, {})
    options = tf.RunOptions(output_partition_graphs=True)
    metadata = tf.RunMetadata()
    with tf.Session(config=config) as sess:
      sess.run(tf.global_variables_initializer())
      loss, _ = sess.run([spec.loss, spec.train_op],
                         {feeds[k]: v for k, v in batch.items()},
                         options=options, run_metadata=metadata)
  ops = [(node.op, node.attr["T"].type) for g in metadata.partition_graphs
         for node in g.node]
  return ops, loss


def test_bf16_rewrite_runs_bfloat16_matmuls_on_cpu():
  bf16 = tf.bfloat16.as_datatype_enum
  plan = precision.plan(precision.TrainingOptions(precision="bf16"))
  assert plan.rewrite == "auto_mixed_precision_onednn_bfloat16"
  if not precision.cpu_has_bf16():
    pytest.skip("this CPU has no AVX512-BF16/AMX: TensorFlow skips the "
                "oneDNN bfloat16 rewrite (graph stays float32)")
  ops, loss = _run_partition_graphs(precision.session_config(plan))
  matmuls = [op for op, t in ops if "MatMul" in op or "Einsum" in op]
  low = [op for op, t in ops
         if ("MatMul" in op or "Einsum" in op) and t == bf16]
  assert low, "no bfloat16 matmul in the rewritten graph: %s" % matmuls
  assert len(low) >= len(matmuls) // 2
  reference, ref_loss = _run_partition_graphs(None)
  assert not [op for op, t in reference if t == bf16]
  assert abs(loss - ref_loss) < 0.02 * ref_loss


def test_bf16_casts_keep_float32_variables_and_softmax():
  rng = np.random.RandomState(3)
  batches = [random_batch(rng, 4) for _ in range(2)]
  want, _ = train(batches)
  got, _ = train(batches, compute_dtype=tf.bfloat16)
  graph = tf.Graph()
  with graph.as_default():
    feeds = _placeholders(batches[0])
    model = modeling.AlbertModel(
        _config(), False, feeds["input_ids"], feeds["input_mask"],
        compute_dtype=tf.bfloat16)
    assert all(v.dtype.base_dtype == tf.float32
               for v in tf.global_variables())
    ops = graph.get_operations()
    einsums = [op for op in ops if op.type == "Einsum"]
    assert einsums and all(op.outputs[0].dtype == tf.bfloat16
                           for op in einsums)
    # q.k and probs.v in bfloat16; the mask's broadcast matmul is float32.
    attention = [op for op in ops if op.type == "BatchMatMulV2"
                 and op.outputs[0].dtype == tf.bfloat16]
    assert len(attention) >= 2
    softmax = [op for op in ops if op.type == "Softmax"]
    assert softmax and all(op.outputs[0].dtype == tf.float32
                           for op in softmax)
    assert model.get_sequence_output().dtype == tf.float32
  # Same variables, small bf16 rounding differences after two steps.
  assert_close(got, want, atol=5e-3)


def test_fp16_plan_builds_loss_scaled_graph_and_warns_without_gpu(caplog):
  plan = precision.plan(precision.TrainingOptions(precision="fp16"))
  assert plan.loss_scale and plan.rewrite == "auto_mixed_precision"
  config = precision.session_config(plan)
  assert config.graph_options.rewrite_options.auto_mixed_precision == 1
  if not precision.visible_gpus():
    assert "no GPU is visible" in caplog.text


def test_tpu_plan_uses_bf16_casts_and_refuses_gpu_settings():
  plan = precision.plan(precision.TrainingOptions(precision="bf16"),
                        use_tpu=True)
  assert plan.compute_dtype == tf.bfloat16 and not plan.rewrite
  for bad in (dict(precision="fp16"), dict(distribution="mirrored"),
              dict(use_xla=True), dict(gradient_accumulation_steps=2)):
    with pytest.raises(precision.TrainingSetupError):
      precision.plan(precision.TrainingOptions(**bad), use_tpu=True)


def test_validate_refuses_unsplittable_batches():
  mirrored = precision.TrainingOptions(distribution="mirrored",
                                       num_cpu_replicas=2,
                                       gradient_accumulation_steps=2)
  precision.validate(mirrored, False, train_batch_size=8)  # 4 per run: fine
  with pytest.raises(precision.TrainingSetupError,
                     match="batch of 3 per session run .* over 2 replicas"):
    precision.validate(mirrored, False, train_batch_size=6)


def test_worker_task_reads_tf_config_and_names_the_chief():
  workers = {"worker": ["a:1", "b:1", "c:1"]}
  task = precision.worker_task(
      {"TF_CONFIG": cluster.tf_config(workers, "worker", 2)})
  assert (task.type, task.index, task.num_workers) == ("worker", 2, 3)
  assert not task.is_chief
  assert precision.worker_task(
      {"TF_CONFIG": cluster.tf_config(workers, "worker", 0)}).is_chief
  # With a "chief" task, worker 0 is an ordinary worker.
  with_chief = dict(workers, chief=["z:1"])
  assert not precision.worker_task(
      {"TF_CONFIG": cluster.tf_config(with_chief, "worker", 0)}).is_chief
  chief = precision.worker_task(
      {"TF_CONFIG": cluster.tf_config(with_chief, "chief", 0)})
  assert chief.is_chief and chief.num_workers == 4


@pytest.mark.parametrize("environ, message", [
    ({}, "needs TF_CONFIG"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not a cluster"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})},
     "TF_CONFIG is not a cluster"),
    ({"TF_CONFIG": cluster.tf_config({"worker": ["a:1"]}, "worker", 1)},
     "task worker 1 is not among"),
    ({"TF_CONFIG": cluster.tf_config({"worker": ["a:1"], "ps": ["p:1"]},
                                     "ps", 0)},
     "task ps 0 is not among"),
])
def test_multi_worker_refuses_a_missing_or_bad_tf_config(monkeypatch,
                                                          environ, message):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  for key, value in environ.items():
    monkeypatch.setenv(key, value)
  with pytest.raises(precision.TrainingSetupError, match=message):
    precision.validate(precision.TrainingOptions(distribution="multi_worker"),
                       False)


def test_multi_worker_refuses_logical_cpu_replicas(monkeypatch):
  monkeypatch.setenv("TF_CONFIG",
                     cluster.tf_config({"worker": ["a:1"]}, "worker", 0))
  with pytest.raises(precision.TrainingSetupError,
                     match="--num_cpu_replicas is for --distribution="
                     "mirrored"):
    precision.validate(precision.TrainingOptions(
        distribution="multi_worker", num_cpu_replicas=2), False)


MIRRORED_CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "mirrored_check.py")


def test_mirrored_two_cpu_replicas_equal_one_device(tmp_path):
  """In a subprocess: logical devices must be set before TF starts.

  Before the fix the first step never finished (collective all-reduce in a
  tf.Session), so a hang fails here through the timeout."""
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, MIRRORED_CHECK, str(tmp_path)],
                        cwd=ROOT, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=480)
  assert proc.returncode == 0, proc.stdout[-3000:]
  assert "MIRRORED OK" in proc.stdout


MULTI_WORKER_CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "multi_worker_check.py")


def test_multi_worker_two_processes_equal_one_device(tmp_path):
  """Two worker processes on localhost (TF_CONFIG), then one device on the
  same global batches. Before the fix the flag was refused outright."""
  from tests.albert import multi_worker_check  # pylint: disable=g-import-not-at-top
  multi_worker_check.write_init(str(tmp_path))
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  workers = [subprocess.Popen(
      [sys.executable, MULTI_WORKER_CHECK, str(tmp_path)], cwd=ROOT,
      env=dict(env, TF_CONFIG=config), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)
             for config in cluster.local_workers(2)]
  try:
    for proc in workers:
      out, _ = proc.communicate(timeout=300)
      assert proc.returncode == 0 and "WORKER OK" in out, out[-3000:]
  finally:
    for proc in workers:
      proc.kill()
  multi_worker_check.compare(str(tmp_path))
