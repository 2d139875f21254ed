"""--distribution=multi_worker (2 worker processes) vs one device.

Used by tests/albert/test_training.py, which calls `write_init`, then runs
this file once per worker of the cluster, at the same time (each needs its
own TensorFlow runtime and TF_CONFIG), then calls `compare`:

  TF_CONFIG=... python tests/albert/multi_worker_check.py WORK_DIR

`write_init` saves the starting checkpoint of the tiny pretraining model
(no dropout); each worker trains from it 3 steps of global batch 8 through
`precision.make_strategy` (MultiWorkerMirroredStrategy, one replica per
worker reading batches of 4) and `estimator_utils.train`, into the shared
WORK_DIR/multi, and prints "WORKER OK"; `compare` trains the same 3
batches of 8 on one device and compares every variable of the chief's
checkpoint (1e-5) and the global step.
"""
import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf

# pylint: disable=wrong-import-position
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mirrored_check as mc
import test_training as tt

from albert import precision
# pylint: enable=wrong-import-position

STEPS = 3


def batches():
  rng = np.random.RandomState(0)
  return [tt.random_batch(rng, 8) for _ in range(STEPS)]


def init_path(work_dir):
  return os.path.join(work_dir, "init", "model.ckpt")


def write_init(work_dir):
  tt.train([], template=batches()[0], save_to=init_path(work_dir))


def worker(work_dir):
  plan = precision.plan(precision.TrainingOptions(
      distribution="multi_worker"))
  strategy = precision.make_strategy(plan)
  assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
  mc.train(os.path.join(work_dir, "multi"), batches(), strategy,
           init_path(work_dir))
  print("WORKER OK")


def compare(work_dir):
  want, want_step, _ = mc.train(os.path.join(work_dir, "single"), batches(),
                                None, init_path(work_dir))
  got, got_step = mc.read_model(
      tf.train.latest_checkpoint(os.path.join(work_dir, "multi")))
  assert got_step == want_step == STEPS, (got_step, want_step)
  mc.assert_same_training(got, want, init_path(work_dir), "multi_worker")


if __name__ == "__main__":
  worker(sys.argv[1])
