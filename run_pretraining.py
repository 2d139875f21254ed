# coding=utf-8
"""Run masked-LM / sentence-order pretraining for ALBERT (BioALBERT).

Thin script: upstream's absl flags and `main`; the model, heads and input
pipeline are in `albert/run_pretraining.py`. Runs on TPU with
--use_tpu --tpu_name=..., otherwise on CPU/GPU. Training resumes from the
latest checkpoint in --output_dir, so rerunning with a larger
--num_train_steps continues where the last run stopped.

  python run_pretraining.py \
    --albert_config_file=albert/configs/albert_base.json \
    --input_file='data/pretrain-*.tfrecord' --output_dir=out \
    --max_seq_length=128 --train_batch_size=64 --num_train_steps=1000

The BioALBERT recipes (paper Table I) are flagfiles in bio/recipes/.
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import estimator_utils
from albert import file_utils
from albert import modeling
from albert import run_pretraining as pretraining

FLAGS = flags.FLAGS

## Required parameters
flags.DEFINE_string(
    "albert_config_file", None,
    "The config json file corresponding to the pre-trained ALBERT model. "
    "This specifies the model architecture.")

flags.DEFINE_string(
    "input_file", None,
    "Input TF example files (can be a glob or comma separated).")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints will be written.")

## Other parameters
flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained ALBERT model): a "
    "checkpoint prefix or a directory holding checkpoints. Encoder and cls/ "
    "heads are restored.")

flags.DEFINE_integer(
    "max_seq_length", 512,
    "The maximum total input sequence length after SentencePiece "
    "tokenization. Must match data generation.")

flags.DEFINE_integer(
    "max_predictions_per_seq", 20,
    "Maximum number of masked LM predictions per sequence. "
    "Must match data generation.")

flags.DEFINE_bool("do_train", True, "Whether to run training.")

flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")

flags.DEFINE_integer("train_batch_size", 4096, "Total batch size for training.")

flags.DEFINE_integer("eval_batch_size", 64, "Total batch size for eval.")

flags.DEFINE_enum("optimizer", "lamb", ["adamw", "lamb"],
                  "The optimizer for training.")

flags.DEFINE_float("learning_rate", 0.00176, "The initial learning rate.")

flags.DEFINE_float("poly_power", 1.0, "The power of poly decay.")

flags.DEFINE_integer("num_train_steps", 125000, "Number of training steps.")

flags.DEFINE_integer("num_warmup_steps", 3125, "Number of warmup steps.")

flags.DEFINE_integer("start_warmup_step", 0, "The starting step of warmup.")

flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")

flags.DEFINE_bool("init_from_group0", False, "Whether to initialize "
                  "parameters of other groups from group 0")

flags.DEFINE_float(
    "masked_lm_budget", 0,
    "If >0, the ratio of masked ngrams to unmasked ngrams. Default 0, "
    "for offline masking")

# use_tpu, tpu_name, tpu_zone, gcp_project, master, num_tpu_cores,
# iterations_per_loop, save_checkpoints_steps, keep_checkpoint_max.
common_flags.define_tpu_flags(iterations_per_loop=1000,
                                 save_checkpoints_steps=5000,
                                 keep_checkpoint_max=5)

# Seconds between looks for a new checkpoint when evaluating alongside a
# separate training job.
_EVAL_POLL_SECONDS = 5


def _load_config(path):
  if not tf.io.gfile.exists(path):
    raise pretraining.PretrainingInputError(
        "--albert_config_file %s does not exist." % path)
  try:
    return modeling.AlbertConfig.from_json_file(path)
  except ValueError as e:
    raise pretraining.PretrainingInputError(
        "--albert_config_file %s is not a valid ALBERT config: %s" % (path, e))


def _evaluate(estimator, input_files):
  """Upstream's eval loop: evaluate checkpoints until num_train_steps.

  The results of every evaluation are appended to eval_results.txt, which is
  rewritten atomically; the checkpoint with the best masked_lm_accuracy is
  copied to model.ckpt-best.
  """
  logging.info("***** Running evaluation *****")
  logging.info("  Batch size = %d", FLAGS.eval_batch_size)
  eval_input_fn = pretraining.input_fn_builder(
      input_files=input_files,
      max_seq_length=FLAGS.max_seq_length,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      is_training=False,
      masked_lm_budget=FLAGS.masked_lm_budget)
  output_eval_file = os.path.join(FLAGS.output_dir, "eval_results.txt")
  text = ""
  best_perf = 0
  key_name = "masked_lm_accuracy"
  global_step = -1
  evaluated = None
  waiting = False
  while global_step < FLAGS.num_train_steps:
    checkpoint_path = estimator.latest_checkpoint()
    if checkpoint_path is None or checkpoint_path == evaluated:
      # Another job is training; unlike upstream, do not re-evaluate the same
      # checkpoint while waiting for the next one.
      if not waiting:
        logging.info("Waiting for a new checkpoint in %s (evaluation ends "
                     "after step %d).", FLAGS.output_dir,
                     FLAGS.num_train_steps)
        waiting = True
      time.sleep(_EVAL_POLL_SECONDS)
      continue
    waiting = False
    result = estimator.evaluate(input_fn=eval_input_fn,
                                steps=FLAGS.max_eval_steps,
                                checkpoint_path=checkpoint_path)
    evaluated = checkpoint_path
    global_step = int(result["global_step"])
    logging.info("***** Eval results (%s) *****", checkpoint_path)
    for key in sorted(result.keys()):
      logging.info("  %s = %s", key, str(result[key]))
    text += pretraining.format_eval_results(result)
    file_utils.atomic_write(output_eval_file, text)
    if result[key_name] > best_perf:
      best_perf = result[key_name]
      pretraining.copy_checkpoint(checkpoint_path, "best")


def run():
  """Validates the flags and inputs, then trains and/or evaluates."""
  if not FLAGS.do_train and not FLAGS.do_eval:
    raise pretraining.PretrainingInputError(
        "At least one of `do_train` or `do_eval` must be True.")

  for name in ("train_batch_size", "eval_batch_size", "num_train_steps",
               "max_seq_length", "max_predictions_per_seq", "max_eval_steps"):
    if FLAGS[name].value <= 0:
      raise pretraining.PretrainingInputError(
          "--%s must be positive, got %d." % (name, FLAGS[name].value))

  if FLAGS.masked_lm_budget:
    # Upstream defines the flag and parses `token_boundary` for it, but has no
    # online masking to consume it.
    raise pretraining.PretrainingInputError(
        "--masked_lm_budget > 0 (online masking) is not implemented, as "
        "upstream; create the data with offline masking instead.")

  # Everything is checked before output_dir is created, so a bad run leaves
  # nothing behind.
  albert_config = _load_config(FLAGS.albert_config_file)
  modeling.check_seq_length(FLAGS.max_seq_length, albert_config,
                            FLAGS.albert_config_file,
                            pretraining.PretrainingInputError)
  input_files = pretraining.expand_input_files(FLAGS.input_file)
  logging.info("*** Input Files ***")
  for input_file in input_files:
    logging.info("  %s", input_file)
    pretraining.check_input_file(input_file, FLAGS.max_seq_length,
                                 FLAGS.max_predictions_per_seq,
                                 FLAGS.masked_lm_budget)
  init_checkpoint = None
  if FLAGS.init_checkpoint:
    init_checkpoint = file_utils.resolve_checkpoint(
        FLAGS.init_checkpoint, error_cls=pretraining.PretrainingInputError)

  tf.io.gfile.makedirs(FLAGS.output_dir)

  model_fn = pretraining.model_fn_builder(
      albert_config=albert_config,
      init_checkpoint=init_checkpoint,
      learning_rate=FLAGS.learning_rate,
      num_train_steps=FLAGS.num_train_steps,
      num_warmup_steps=FLAGS.num_warmup_steps,
      use_tpu=FLAGS.use_tpu,
      use_one_hot_embeddings=FLAGS.use_tpu,
      optimizer=FLAGS.optimizer,
      poly_power=FLAGS.poly_power,
      start_warmup_step=FLAGS.start_warmup_step,
      init_from_group0=FLAGS.init_from_group0)

  # Falls back to a plain Estimator on CPU/GPU when --use_tpu=false.
  estimator = estimator_utils.make_estimator(
      model_fn, FLAGS, FLAGS.output_dir,
      train_batch_size=FLAGS.train_batch_size,
      eval_batch_size=FLAGS.eval_batch_size)

  if FLAGS.do_train:
    logging.info("***** Running training *****")
    logging.info("  Batch size = %d", FLAGS.train_batch_size)
    train_input_fn = pretraining.input_fn_builder(
        input_files=input_files,
        max_seq_length=FLAGS.max_seq_length,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        is_training=True,
        masked_lm_budget=FLAGS.masked_lm_budget)
    # On TPU hooks only run between loops of iterations_per_loop steps.
    throughput = estimator_utils.ThroughputHook(
        FLAGS.train_batch_size, FLAGS.num_train_steps,
        every_n_steps=min(FLAGS.iterations_per_loop, 100))
    estimator.train(input_fn=train_input_fn, max_steps=FLAGS.num_train_steps,
                    hooks=[throughput])

  if FLAGS.do_eval:
    _evaluate(estimator, input_files)


def main(_):
  logging.set_verbosity(logging.INFO)
  tf.logging.set_verbosity(tf.logging.INFO)
  # TF's logger prints through its own handler and again through absl's root
  # handler; keep absl's (it has timestamps).
  tf_logger = tf.get_logger()
  for handler in list(tf_logger.handlers):
    tf_logger.removeHandler(handler)
  try:
    run()
  except pretraining.PretrainingInputError as e:
    sys.exit("run_pretraining.py: error: %s" % e)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("albert_config_file")
  flags.mark_flag_as_required("output_dir")
  app.run(main)
