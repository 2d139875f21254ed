# coding=utf-8
"""Run masked-LM / sentence-order pretraining for ALBERT (BioALBERT).

Thin script: upstream's absl flags and a `main` calling
`albert.run_pretraining.run`, where the model, heads, input pipeline, checks
and eval loop are. Runs on TPU with --use_tpu --tpu_name=..., otherwise on
CPU/GPU. Training resumes from the latest checkpoint in --output_dir, so
rerunning with a larger --num_train_steps continues where the last run
stopped; --stop_at_step=N ends a run at step N of its schedule, and the
same flags without it continue. On GPUs: --precision=fp16|bf16,
--gradient_accumulation_steps=K (the paper's batch 1024 on one device),
--distribution=mirrored (all local GPUs) or multi_worker (TF_CONFIG); on
CPU --precision=bf16.

  python run_pretraining.py \
    --albert_config_file=albert/configs/albert_base.json \
    --input_file='data/pretrain-*.tfrecord' --output_dir=out \
    --spm_model_file=bio30k.model \
    --max_seq_length=128 --train_batch_size=64 --num_train_steps=1000

Outputs in --output_dir: upstream's checkpoints, eval_results.txt and
model.ckpt-best (with --do_eval), and spm_record.json (the SentencePiece
model of the checkpoints, with --spm_model_file). Beyond upstream: bad
input or flags stop the run before anything is written, with one line
naming the file or flag; a second training run on the same --output_dir
stops; --do_eval --nodo_train evaluates what exists and stops unless a
training run is writing there. The BioALBERT recipes (paper Table I) are
flagfiles in bio/recipes/.
"""
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import run_pretraining as pretraining

FLAGS = flags.FLAGS

common_flags.define_model_flags(init_checkpoint_help=(
    "Initial checkpoint (usually from a pre-trained ALBERT model): a "
    "checkpoint prefix or a directory holding checkpoints. Encoder and cls/ "
    "heads are restored."))

flags.DEFINE_string(
    "input_file", None,
    "Input TF example files (can be a glob or comma separated).")

common_flags.define_output_dir_flag(
    "The output directory where the model checkpoints will be written.")

common_flags.define_spm_model_file_flag(
    "[Optional] The SentencePiece model of the data: recorded beside the "
    "checkpoints (spm_record.json) and checked against the model of "
    "--init_checkpoint and of the checkpoints in --output_dir.")

common_flags.define_max_seq_length_flag(
    512, "The maximum total input sequence length after SentencePiece "
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

flags.DEFINE_integer(
    "stop_at_step", None,
    "Not upstream: end this run at this global step, keeping the "
    "learning-rate schedule of --num_train_steps (a checkpoint is written "
    "there); the same flags without it continue the run.", lower_bound=1)

flags.DEFINE_integer("num_warmup_steps", 3125, "Number of warmup steps.")

flags.DEFINE_integer("start_warmup_step", 0, "The starting step of warmup.")

flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")

flags.DEFINE_bool("init_from_group0", False, "Whether to initialize "
                  "parameters of other groups from group 0")

flags.DEFINE_float(
    "masked_lm_budget", 0,
    "If >0, the ratio of masked ngrams to unmasked ngrams. Default 0, "
    "for offline masking")

common_flags.define_seed_flag(
    "the initialisation, dropout and training-data order")

flags.DEFINE_bool(
    "check_input_files", True,
    "Read every input record before training: framing and CRC (a truncated "
    "or corrupt file), and token ids below the config's vocab_size. About "
    "100 MB/s per core; --nocheck_input_files checks first records only.")

# use_tpu, tpu_name, tpu_zone, gcp_project, master, num_tpu_cores,
# iterations_per_loop, save_checkpoints_steps, keep_checkpoint_max.
common_flags.define_tpu_flags(iterations_per_loop=1000,
                              save_checkpoints_steps=5000,
                              keep_checkpoint_max=5)

# precision, gradient_accumulation_steps, distribution, num_cpu_replicas,
# use_xla (albert/precision.py).
common_flags.define_training_flags()


def main(_):
  logging.set_verbosity(logging.INFO)
  tf.logging.set_verbosity(tf.logging.INFO)
  # TF's logger prints through its own handler and again through absl's root
  # handler; keep absl's (it has timestamps).
  for handler in list(tf.get_logger().handlers):
    tf.get_logger().removeHandler(handler)
  try:
    pretraining.run(pretraining.PretrainingOptions.from_flags(FLAGS))
  except pretraining.PretrainingInputError as e:
    sys.exit("run_pretraining.py: error: %s" % e)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("albert_config_file")
  flags.mark_flag_as_required("output_dir")
  app.run(main)
