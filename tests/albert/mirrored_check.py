"""Mirrored (2 logical CPU replicas) vs one device, through the Estimator.

Run by tests/albert/test_training.py in a subprocess (logical devices must
be configured before TensorFlow starts):

  python tests/albert/mirrored_check.py WORK_DIR

Writes one initial checkpoint of the tiny pretraining model (no dropout),
then trains from it 3 steps of global batch 8 with
`estimator_utils.make_estimator` twice: through the 2-replica
MirroredStrategy of `precision.make_strategy` (each replica reads batches
of `params["batch_size"]` = 4) and on one device (the reference train op,
batches of 8), on the same examples. Compares every checkpoint variable
(1e-5) and the global step. Prints "MIRRORED OK" on success.
"""
import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf

# pylint: disable=wrong-import-position
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_training as tt

from albert import estimator_utils
from albert import precision
from albert import run_pretraining as rp
# pylint: enable=wrong-import-position


def input_fn_of(batches):
  def input_fn(params):
    arrays = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    arrays = {k: v.astype(np.float32 if v.dtype == np.float32 else np.int32)
              for k, v in arrays.items()}
    return tf.data.Dataset.from_tensor_slices(arrays).batch(
        params["batch_size"], drop_remainder=True)
  return input_fn


def train(work_dir, batches, strategy, init_checkpoint):
  model_fn = rp.model_fn_builder(
      tt._config(), init_checkpoint, 1e-3, 10, 2, use_tpu=False,  # pylint: disable=protected-access
      use_one_hot_embeddings=False, optimizer="lamb", poly_power=1.0,
      start_warmup_step=0)
  estimator = estimator_utils.make_estimator(
      model_fn, estimator_utils.TpuOptions(), work_dir, 8, 8,
      strategy=strategy)
  losses = LossHook()
  estimator_utils.train(estimator, input_fn_of(batches), len(batches),
                        hooks=[losses])
  values, step = read_model(estimator.latest_checkpoint())
  return values, step, losses.values


class LossHook(tf.train.SessionRunHook):
  """The loss the Estimator reports at each step (for mirrored runs, its
  sum over the replicas)."""

  def __init__(self):
    self.values = []

  def before_run(self, run_context):
    return tf.train.SessionRunArgs(tf.get_collection(tf.GraphKeys.LOSSES))

  def after_run(self, run_context, run_values):
    self.values.extend(float(v) for v in run_values.results)


def read_model(checkpoint):
  """({name: value} of the model's weights and LAMB moments, global step)."""
  reader = tf.train.load_checkpoint(checkpoint)
  values = {name: reader.get_tensor(name)
            for name, _ in tf.train.list_variables(checkpoint)
            if name.startswith(("bert/", "cls/"))}
  return values, reader.get_tensor("global_step")


def assert_same_training(got, want, init, label):
  """`got` and `want` ({name: value}) agree within 1e-5, and training moved
  the weights away from the `init` checkpoint (else the comparison would
  mean nothing)."""
  assert sorted(got) == sorted(want)
  worst = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
  print("max |%s - single| = %.3g over %d variables" % (label, worst,
                                                        len(want)))
  assert worst < 1e-5
  start, _ = read_model(init)
  moved = max(float(np.max(np.abs(want[k] - start[k]))) for k in start
              if "adam_" not in k)
  print("max |trained - initial| = %.3g" % moved)
  assert moved > 1e-4


def main(work_dir):
  options = precision.TrainingOptions(distribution="mirrored",
                                      num_cpu_replicas=2)
  precision.configure_cpu_replicas(options)
  assert len(tf.config.list_logical_devices("CPU")) == 2
  strategy = precision.make_strategy(precision.plan(options))
  assert strategy.num_replicas_in_sync == 2
  assert isinstance(strategy.extended._cross_device_ops,  # pylint: disable=protected-access
                    tf.distribute.ReductionToOneDevice)
  try:
    estimator_utils.make_estimator(None, estimator_utils.TpuOptions(),
                                   work_dir, 7, 8, strategy=strategy)
    raise AssertionError("an odd global batch was split over 2 replicas")
  except precision.TrainingSetupError as e:
    assert "not divisible by the 2 replicas" in str(e), e
  rng = np.random.RandomState(0)
  batches = [tt.random_batch(rng, 8) for _ in range(3)]
  # Both runs start from the same weights (random initialisers would draw
  # differently in the two graphs).
  init = os.path.join(work_dir, "init", "model.ckpt")
  tt.train([], template=batches[0], save_to=init)
  got, got_step, got_loss = train(os.path.join(work_dir, "mirrored"),
                                  batches, strategy, init)
  want, want_step, want_loss = train(os.path.join(work_dir, "single"),
                                     batches, None, init)
  assert got_step == want_step == 3, (got_step, want_step)
  # The logged loss is the global batch's mean, as on one device.
  print("logged losses: mirrored %s, single %s" % (got_loss, want_loss))
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  assert_same_training(got, want, init, "mirrored")
  print("MIRRORED OK")


if __name__ == "__main__":
  main(sys.argv[1])
