# coding=utf-8
r"""Create masked LM / sentence-order TF examples for ALBERT pretraining.

Upstream's flags, meanings and defaults (except --dupe_factor: 5, as in
BioALBERT; upstream 40). The work is done by `albert.create_pretraining_data`.

Upstream's mode (the default) pools every input into one shuffled set of
instances written round-robin to --output_file. Per-shard mode
(--num_workers=N >= 1, or upstream's --parallel) turns each input shard into
its own output file with seed `shard_seed(random_seed, shard_index)`, in N
worker processes, and skips outputs that already exist:

  python create_pretraining_data.py --input_file='corpus/part-*.txt' \
      --output_dir=tfrecords --spm_model_file=bio30k.model \
      --num_workers=8 --max_seq_length=512
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import create_pretraining_data as cpd
from albert import modeling
from albert import tokenization

flags.DEFINE_string("input_file", None,
                    "Input raw text file (or comma-separated list of files). "
                    "Globs are expanded; each glob's matches are sorted.")

flags.DEFINE_string(
    "output_file", None,
    "Output TF example file (or comma-separated list of files). In per-shard "
    "mode: one per input file, in the same order (or use --output_dir).")

# --spm_model_file, --vocab_file, --do_lower_case, --corrected_digit_comma.
common_flags.define_tokenizer_flags()

flags.DEFINE_string(
    "input_file_mode", "r",
    "The data format of the input file: 'r' or 'rb'. Kept for compatibility; "
    "input is always read as bytes and decoded as strict UTF-8.")

flags.DEFINE_bool(
    "do_whole_word_mask", True,
    "Whether to use whole word masking rather than per-WordPiece masking.")

flags.DEFINE_bool(
    "do_permutation", False,
    "Whether to do the permutation training.")

flags.DEFINE_bool(
    "favor_shorter_ngram", True,
    "Whether to set higher probabilities for sampling shorter ngrams.")

flags.DEFINE_bool(
    "random_next_sentence", False,
    "Whether to use the sentence that's right before the current sentence "
    "as the negative sample for next sentence prection, rather than using "
    "sentences from other random documents.")

flags.DEFINE_integer("max_seq_length", 512, "Maximum sequence length.")

flags.DEFINE_integer("ngram", 3, "Maximum number of ngrams to mask.")

flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "Maximum number of masked LM predictions per sequence.")

flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")

flags.DEFINE_integer(
    "dupe_factor", 5,
    "Number of times to duplicate the input data (with different masks).")

flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")

flags.DEFINE_float(
    "short_seq_prob", 0.1,
    "Probability of creating sequences which are shorter than the "
    "maximum length.")

flags.DEFINE_bool(
    "parallel", False,
    "Upstream's multi-file option: per-shard mode with one worker per CPU "
    "(same as --num_workers=<number of CPUs>).")

# Beyond upstream.
flags.DEFINE_integer(
    "num_workers", 0,
    "0: upstream's single-process mode. N >= 1: per-shard mode, one output "
    "file per input file, N worker processes (1 = in this process).")

flags.DEFINE_string(
    "output_dir", None,
    "Per-shard mode: write <output_dir>/<input name minus extension>.tfrecord "
    "for each input instead of listing --output_file.")

flags.DEFINE_integer(
    "num_tasks", 1,
    "Per-shard mode: split the shards among this many machines/jobs, each "
    "given the same --input_file and its own --task_index.")

flags.DEFINE_integer(
    "task_index", 0,
    "Per-shard mode: this job handles the shards whose index modulo "
    "--num_tasks equals --task_index.")

flags.DEFINE_string(
    "albert_config_file", None,
    "Optional ALBERT config json: if given, --max_seq_length must not exceed "
    "its max_position_embeddings and the vocabulary must fit its vocab_size.")

FLAGS = flags.FLAGS


def _options():
  return cpd.DataOptions(
      max_seq_length=FLAGS.max_seq_length,
      dupe_factor=FLAGS.dupe_factor,
      short_seq_prob=FLAGS.short_seq_prob,
      masked_lm_prob=FLAGS.masked_lm_prob,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      do_lower_case=FLAGS.do_lower_case,
      do_whole_word_mask=FLAGS.do_whole_word_mask,
      do_permutation=FLAGS.do_permutation,
      favor_shorter_ngram=FLAGS.favor_shorter_ngram,
      random_next_sentence=FLAGS.random_next_sentence,
      ngram=FLAGS.ngram)


def _check_flags(per_shard):
  """Raises app.UsageError for contradictory or missing flags."""
  if not FLAGS.vocab_file and not FLAGS.spm_model_file:
    raise app.UsageError("Pass --spm_model_file (or --vocab_file).")
  if FLAGS.input_file_mode not in ("r", "rb"):
    raise app.UsageError("--input_file_mode must be 'r' or 'rb', got %r" %
                         FLAGS.input_file_mode)
  if FLAGS.num_workers < 0:
    raise app.UsageError("--num_workers must be >= 0")
  if per_shard:
    if bool(FLAGS.output_file) == bool(FLAGS.output_dir):
      raise app.UsageError("Per-shard mode needs exactly one of --output_file "
                           "(one per input) and --output_dir.")
  else:
    if not FLAGS.output_file:
      raise app.UsageError("Pass --output_file.")
    if FLAGS.output_dir or FLAGS.num_tasks != 1 or FLAGS.task_index != 0:
      raise app.UsageError("--output_dir, --num_tasks and --task_index need "
                           "per-shard mode (--num_workers >= 1).")
  try:
    cpd.validate_options(_options())
  except ValueError as e:
    raise app.UsageError(str(e))


def _check_config(tokenizer):
  """The data must fit the model the config describes."""
  if not FLAGS.albert_config_file:
    return
  config = modeling.AlbertConfig.from_json_file(FLAGS.albert_config_file)
  modeling.check_seq_length(FLAGS.max_seq_length, config,
                            FLAGS.albert_config_file, cpd.InputError)
  if len(tokenizer.vocab) > config.vocab_size:
    raise cpd.InputError(
        "the vocabulary has %d pieces but vocab_size is %d in %s" % (
            len(tokenizer.vocab), config.vocab_size, FLAGS.albert_config_file))


def _split_list(value):
  return [part.strip() for part in (value or "").split(",") if part.strip()]


def _run():
  """Returns the process exit status."""
  per_shard = FLAGS.parallel or FLAGS.num_workers >= 1
  _check_flags(per_shard)
  tokenizer_args = common_flags.TokenizerOptions.from_flags().as_kwargs()
  tokenizer = tokenization.FullTokenizer(**tokenizer_args)
  _check_config(tokenizer)
  options = _options()

  input_files = cpd.expand_input_patterns(FLAGS.input_file)
  logging.info("*** Reading from %d input files ***", len(input_files))

  if not per_shard:
    count = cpd.run_single_process(input_files, _split_list(FLAGS.output_file),
                                   tokenizer, FLAGS.random_seed, options)
    logging.info("Done: %d instances", count)
    return 0

  # Per-shard mode: a file named by two patterns is processed once.
  input_files = list(dict.fromkeys(input_files))
  if FLAGS.output_dir:
    output_files = cpd.sharded_output_files(input_files, FLAGS.output_dir)
  else:
    output_files = _split_list(FLAGS.output_file)
  num_workers = FLAGS.num_workers or os.cpu_count() or 1
  results = cpd.run_sharded(
      input_files, output_files, tokenizer_args, FLAGS.random_seed, options,
      num_workers=num_workers, num_tasks=FLAGS.num_tasks,
      task_index=FLAGS.task_index)
  failed = [r for r in results if r.error]
  skipped = [r for r in results if r.skipped]
  written = sum(r.num_instances or 0 for r in results)
  logging.info("Done: %d instances in %d new files; %d files skipped (already "
               "complete); %d failed", written,
               len(results) - len(failed) - len(skipped), len(skipped),
               len(failed))
  for result in failed:
    logging.error("FAILED shard %d: %s", result.shard_index, result.error)
  return 1 if failed else 0


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Unexpected arguments: %s" % " ".join(argv[1:]))
  logging.set_verbosity(logging.INFO)
  # Upstream draws n-gram lengths from NumPy's unseeded global generator; the
  # library uses generators seeded like this one, which is seeded too in case
  # anything falls back to the global.
  np.random.seed(FLAGS.random_seed)
  try:
    status = _run()
  except (ValueError, tf.errors.OpError, OSError) as e:
    # Bad input (cpd.InputError is a ValueError), or a missing or invalid
    # tokenizer model or config file.
    logging.error("%s", e)
    status = 1
  sys.exit(status)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  app.run(main)
