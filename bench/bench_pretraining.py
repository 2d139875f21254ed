r"""Benchmark: pretraining examples/s of this project per --precision/--use_xla.

Builds run_pretraining's TRAIN graph (base config with a 3k vocabulary by
default, LAMB, batch 8, seq 128, 20 masked positions, random data held in
the graph) and runs it in one session per variant:
- fp32:      the reference;
- bf16:      grappler's oneDNN bfloat16 rewrite (session config). TensorFlow
             applies it only on CPUs with AVX512-BF16 or AMX; elsewhere it
             is skipped and this runs float32 (the line "CPU bfloat16" says
             which);
- bf16cast:  explicit bfloat16 casts in the graph (the TPU/GPU path). Without
             native bfloat16 the CPU emulates it, so it is slow: it runs
             --bf16cast_steps steps per round instead of --steps;
- fp32+xla / bf16+xla: the same with XLA jit (--use_xla).
Each variant first runs one untimed step (grappler rewrite, XLA compile).
Variants run in alternating rounds so that load from other users of the
machine hits them alike; examples/s is each variant's total over the rounds,
and the ratios are against the first variant (fp32). With the defaults the
whole run takes about 5-10 minutes on a 2-core AVX2 CPU.

  flock /tmp/bioalbert-bench.lock .venv/bin/python bench/bench_pretraining.py

Prints a markdown table: variant, steps timed, examples/s, ratio, last loss.
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

# pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf

from albert import modeling
from albert import precision
from albert import run_pretraining
# pylint: enable=wrong-import-position

flags.DEFINE_string("config", os.path.join(ROOT, "albert", "configs",
                                           "albert_base.json"),
                    "ALBERT config json.")
flags.DEFINE_integer("vocab_size", 3000, "Overrides the config's vocab.")
flags.DEFINE_integer("batch_size", 8, "Training batch size.")
flags.DEFINE_integer("seq_length", 128, "Sequence length.")
flags.DEFINE_integer("max_predictions", 20, "Masked positions per example.")
flags.DEFINE_integer("steps", 3, "Timed steps per variant and round.")
flags.DEFINE_integer("bf16cast_steps", 1,
                     "Timed steps per round of bf16cast (emulated on CPUs "
                     "without native bfloat16: slow).")
flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
flags.DEFINE_list("variants", ["fp32", "bf16", "bf16cast", "fp32+xla"],
                  "Of fp32, bf16, bf16cast, fp32+xla, bf16+xla.")
FLAGS = flags.FLAGS


def random_features(config, rng):
  b, s, p = FLAGS.batch_size, FLAGS.seq_length, FLAGS.max_predictions
  return {
      "input_ids": rng.randint(5, config.vocab_size, (b, s)),
      "input_mask": np.ones((b, s)),
      "segment_ids": (np.arange(s)[None, :] >= s // 2).repeat(b, 0),
      "masked_lm_positions": rng.randint(1, s, (b, p)),
      "masked_lm_ids": rng.randint(5, config.vocab_size, (b, p)),
      "masked_lm_weights": np.ones((b, p), np.float32),
      "next_sentence_labels": rng.randint(0, 2, (b, 1)),
  }


def build(config, variant):
  """(graph, train fetch) of one variant's graph."""
  dtype = tf.bfloat16 if variant == "bf16cast" else tf.float32
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(0)
    arrays = random_features(config, np.random.RandomState(0))
    feats = {k: tf.constant(v.astype(np.float32 if "weights" in k
                                     else np.int32))
             for k, v in arrays.items()}
    model_fn = run_pretraining.model_fn_builder(
        config, None, 1e-4, 1000, 10, use_tpu=False,
        use_one_hot_embeddings=False, optimizer="lamb", poly_power=1.0,
        start_warmup_step=0, compute_dtype=dtype)
    spec = model_fn(feats, None, tf.estimator.ModeKeys.TRAIN,
                    {"batch_size": FLAGS.batch_size})
    init = tf.global_variables_initializer()
  return graph, init, [spec.loss, spec.train_op]


def session(graph, init, variant):
  name = variant.split("+")[0]
  opts = precision.TrainingOptions(
      precision="fp32" if name == "bf16cast" else name,
      use_xla=variant.endswith("+xla"))
  sess = tf.Session(graph=graph, config=precision.session_config(
      precision.plan(opts)))
  sess.run(init)
  return sess


def steps_of(variant):
  return FLAGS.bf16cast_steps if variant == "bf16cast" else FLAGS.steps


def main(_):
  logging.set_verbosity(logging.WARNING)
  begun = time.time()
  config = modeling.AlbertConfig.from_json_file(FLAGS.config)
  config.vocab_size = FLAGS.vocab_size
  config.hidden_dropout_prob = 0.0
  config.attention_probs_dropout_prob = 0.0
  graphs = {}
  sessions = {}
  for variant in FLAGS.variants:
    key = "bf16cast" if variant == "bf16cast" else "fp32"
    if key not in graphs:
      graphs[key] = build(config, key)
    graph, init, fetch = graphs[key]
    sessions[variant] = (session(graph, init, variant), fetch)
    sessions[variant][0].run(fetch)  # untimed: grappler and XLA compile
  seconds = dict.fromkeys(FLAGS.variants, 0.0)
  losses = {}
  for _ in range(FLAGS.rounds):
    for variant in FLAGS.variants:
      sess, fetch = sessions[variant]
      started = time.time()
      for _ in range(steps_of(variant)):
        losses[variant] = sess.run(fetch)[0]
      seconds[variant] += time.time() - started

  def rate(variant):
    return (steps_of(variant) * FLAGS.rounds * FLAGS.batch_size
            / seconds[variant])

  base = rate(FLAGS.variants[0])
  print("config %s (vocab %d), batch %d, seq %d, LAMB; %d alternating rounds"
        % (os.path.basename(FLAGS.config), config.vocab_size,
           FLAGS.batch_size, FLAGS.seq_length, FLAGS.rounds))
  print("CPU bfloat16 (AVX512-BF16/AMX): %s; oneDNN bf16 rewrite %s" % (
      "yes" if precision.cpu_has_bf16() else "no",
      "applied" if precision.cpu_has_bf16() else "skipped (runs float32)"))
  print("| variant | steps timed | examples/s | vs %s | last loss |"
        % FLAGS.variants[0])
  print("|---|---|---|---|---|")
  for variant in FLAGS.variants:
    print("| %s | %d | %.2f | %.2fx | %.4f |" % (
        variant, steps_of(variant) * FLAGS.rounds, rate(variant),
        rate(variant) / base, losses[variant]))
  print("total wall time %.0f s" % (time.time() - begun))


if __name__ == "__main__":
  app.run(main)
