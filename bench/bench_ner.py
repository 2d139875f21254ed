r"""Benchmark: NER fine-tuning and prediction throughput of the model_fn.

For each config (tiny, base) and max_seq_length (128, 512), builds the NER
model_fn's TRAIN graph (AdamW, dropout) and PREDICT graph on CPU/GPU and
times session runs on random full-length windows, after one warm-up run:
- training examples/s  = steps * train_batch_size / time;
- prediction sentences/s = batches * predict_batch_size / time, counting one
  window per sentence (true at 128 for ~all BioNER sentences; a sentence
  split into k windows costs k). Compute does not depend on the real length:
  every window is padded to max_seq_length.
Estimator start-up (graph building, checkpoint I/O) is excluded; it is
reported separately as `build s`.

  python bench/bench_ner.py --configs=tiny,base --seq_lengths=128,512
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position

from albert import modeling  # pylint: disable=wrong-import-position
from bio.ner import model as ner_model  # pylint: disable=wrong-import-position

CONFIGS = {
    "tiny": os.path.join(ROOT, "albert", "configs", "albert_tiny.json"),
    "base": os.path.join(ROOT, "albert", "configs", "bioalbert_base.json"),
    "large": os.path.join(ROOT, "albert", "configs", "bioalbert_large.json"),
}

flags.DEFINE_list("configs", ["tiny", "base"],
                  "Configs to time: %s, or paths of config files." %
                  ", ".join(sorted(CONFIGS)))
flags.DEFINE_list("seq_lengths", ["128", "512"], "max_seq_length values.")
flags.DEFINE_integer("train_batch_size", 8, "Training batch size.")
flags.DEFINE_integer("train_steps", 3, "Timed training steps.")
flags.DEFINE_integer("predict_batch_size", 16, "Prediction batch size.")
flags.DEFINE_integer("predict_batches", 3, "Timed prediction batches.")
flags.DEFINE_integer("num_labels", 3, "Labels (3 = B/I/O of one type).")

FLAGS = flags.FLAGS


def random_batch(rng, batch, seq, vocab, num_labels):
  ids = rng.randint(5, vocab, (batch, seq)).astype(np.int32)
  ids[:, 0] = 2
  return {
      "input_ids": ids,
      "input_mask": np.ones((batch, seq), np.int32),
      "segment_ids": np.zeros((batch, seq), np.int32),
      "label_ids": rng.randint(0, num_labels, (batch, seq)).astype(np.int32),
      "label_mask": (rng.rand(batch, seq) < 0.7).astype(np.int32),
      "is_real_example": np.ones((batch,), np.int32),
  }


def time_mode(config, seq, batch, runs, mode):
  """(build seconds, seconds for `runs` timed runs after one warm-up)."""
  rng = np.random.RandomState(0)
  started = time.time()
  with tf.Graph().as_default():
    arrays = random_batch(rng, batch, seq, config.vocab_size,
                          FLAGS.num_labels)
    feats = {k: tf.placeholder(tf.int32, v.shape) for k, v in arrays.items()}
    model_fn = ner_model.model_fn_builder(
        config, FLAGS.num_labels, None, 1e-5, 1000, 10, use_tpu=False)
    spec = model_fn(feats, None, mode, {"batch_size": batch})
    if mode == tf.estimator.ModeKeys.TRAIN:
      fetch = [spec.loss, spec.train_op]
    else:
      fetch = spec.predictions["predictions"]
    feed = {feats[k]: v for k, v in arrays.items()}
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(fetch, feed)  # warm-up
      build = time.time() - started
      started = time.time()
      for _ in range(runs):
        sess.run(fetch, feed)
      return build, time.time() - started


def main(_):
  logging.set_verbosity(logging.WARNING)
  rows = []
  for name in FLAGS.configs:
    config = modeling.AlbertConfig.from_json_file(CONFIGS.get(name, name))
    for seq in [int(s) for s in FLAGS.seq_lengths]:
      build_t, train_s = time_mode(config, seq, FLAGS.train_batch_size,
                                   FLAGS.train_steps,
                                   tf.estimator.ModeKeys.TRAIN)
      build_p, pred_s = time_mode(config, seq, FLAGS.predict_batch_size,
                                  FLAGS.predict_batches,
                                  tf.estimator.ModeKeys.PREDICT)
      row = (name, seq,
             FLAGS.train_steps * FLAGS.train_batch_size / train_s,
             train_s / FLAGS.train_steps,
             FLAGS.predict_batches * FLAGS.predict_batch_size / pred_s,
             build_t + build_p)
      rows.append(row)
      print("%-5s seq %4d: train %.2f examples/s (%.2f s/step), predict "
            "%.2f sentences/s, build %.1f s" % row, flush=True)
  print()
  print("| config | max_seq_length | train examples/s (batch %d) | "
        "s/step | predict sentences/s (batch %d) |" %
        (FLAGS.train_batch_size, FLAGS.predict_batch_size))
  print("|---|---|---|---|---|")
  for row in rows:
    print("| %s | %d | %.2f | %.2f | %.2f |" % row[:5])


if __name__ == "__main__":
  app.run(main)
