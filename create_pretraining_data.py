# coding=utf-8
r"""Create masked LM / sentence-order TF examples for ALBERT pretraining.

Upstream's flags, meanings and defaults (except --dupe_factor: 5, as in
BioALBERT; upstream 40). The work is done by `albert.create_pretraining_data.
run`; the flags shared with the Beam form are defined there.

Upstream's mode (the default) pools every input into one shuffled set of
instances written round-robin to --output_file. Per-shard mode
(--num_workers=N >= 1, or upstream's --parallel) turns each input shard into
its own output file with seed `shard_seed(random_seed, shard_index)`, in N
worker processes, and skips outputs that already exist:

  python create_pretraining_data.py --input_file='corpus/part-*.txt' \
      --output_dir=tfrecords --spm_model_file=bio30k.model \
      --num_workers=8 --max_seq_length=512

Bad flags or input end with one error line and exit status 1, leaving no
output (per-shard mode: no output for the failed shards).
"""
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from albert import create_pretraining_data as cpd

# input_file, output_file, output_dir, spm_model_file, vocab_file,
# do_lower_case, max_seq_length, random_seed and the masking flags.
cpd.define_data_flags()

flags.DEFINE_string(
    "input_file_mode", "r",
    "The data format of the input file: 'r' or 'rb'. Kept for compatibility; "
    "input is always read as bytes and decoded as strict UTF-8.")

flags.DEFINE_bool(
    "parallel", False,
    "Upstream's multi-file option: per-shard mode with one worker per CPU "
    "(same as --num_workers=<number of CPUs>).")

# Beyond upstream.
flags.DEFINE_integer(
    "num_workers", 0,
    "0: upstream's single-process mode. N >= 1: per-shard mode, one output "
    "file per input file, N worker processes (1 = in this process).")

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Unexpected arguments: %s" % " ".join(argv[1:]))
  logging.set_verbosity(logging.INFO)
  # Upstream draws n-gram lengths from NumPy's unseeded global generator; the
  # library seeds its own, and this one too in case anything falls back.
  np.random.seed(FLAGS.random_seed)
  try:
    sys.exit(cpd.run(cpd.CommandOptions.from_flags(FLAGS)))
  except (ValueError, tf.errors.OpError, OSError) as e:
    # Bad flags or input (cpd.InputError is a ValueError), or a missing or
    # invalid tokenizer model or config file.
    logging.error("%s", e)
    sys.exit(1)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  app.run(main)
