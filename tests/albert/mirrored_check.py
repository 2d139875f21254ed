"""Mirrored (2 logical CPU replicas) vs one device, through the Estimator.

Run by tests/albert/test_training.py in a subprocess (logical devices must
be configured before TensorFlow starts):

  python tests/albert/mirrored_check.py WORK_DIR

Trains the tiny pretraining model 3 steps of global batch 8 with
`estimator_utils.make_estimator` twice, once through a 2-replica
MirroredStrategy and once on one device (the reference train op), on the
same batches, and compares every checkpoint variable (1e-5). Prints
"MIRRORED OK" on success.
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
    del params
    arrays = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    arrays = {k: v.astype(np.float32 if v.dtype == np.float32 else np.int32)
              for k, v in arrays.items()}
    return tf.data.Dataset.from_tensor_slices(arrays).batch(
        len(batches[0]["input_ids"]), drop_remainder=True)
  return input_fn


def train(work_dir, batches, strategy):
  model_fn = rp.model_fn_builder(
      tt._config(), None, 1e-3, 10, 2, use_tpu=False,  # pylint: disable=protected-access
      use_one_hot_embeddings=False, optimizer="lamb", poly_power=1.0,
      start_warmup_step=0)

  def seeded_model_fn(features, labels, mode, params):
    tf.set_random_seed(7)
    return model_fn(features, labels, mode, params)

  estimator = estimator_utils.make_estimator(
      seeded_model_fn, estimator_utils.TpuOptions(), work_dir, 8, 8,
      strategy=strategy)
  estimator.train(input_fn_of(batches), max_steps=len(batches))
  reader = tf.train.load_checkpoint(estimator.latest_checkpoint())
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(estimator.latest_checkpoint())
          if name.startswith(("bert/", "cls/")) and "adam_" not in name}, (
              reader.get_tensor("global_step"))


def main(work_dir):
  options = precision.TrainingOptions(distribution="mirrored",
                                      num_cpu_replicas=2)
  precision.configure_cpu_replicas(options)
  assert len(tf.config.list_logical_devices("CPU")) == 2
  strategy = precision.make_strategy(precision.plan(options))
  assert strategy.num_replicas_in_sync == 2
  rng = np.random.RandomState(0)
  batches = [tt.random_batch(rng, 8) for _ in range(3)]
  # The initial values must match: both runs start from the same seed and
  # a fresh model_dir, then are compared after 3 updates.
  got, got_step = train(os.path.join(work_dir, "mirrored"), batches, strategy)
  want, want_step = train(os.path.join(work_dir, "single"), batches, None)
  assert got_step == want_step == 3, (got_step, want_step)
  assert sorted(got) == sorted(want)
  worst = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
  print("max |mirrored - single| = %.3g over %d variables" % (worst,
                                                              len(want)))
  assert worst < 1e-5
  print("MIRRORED OK")


if __name__ == "__main__":
  main(sys.argv[1])
