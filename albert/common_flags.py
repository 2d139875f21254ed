"""Flag groups shared by the command-line tools, defined by functions so each
tool picks the groups it needs (as tensorflow/models' flag helpers do).

A group defines the flags under upstream's names with one help text, and
has a matching typed option object (`TpuOptions` in estimator_utils,
`TokenizerOptions` here) built from parsed flags, so libraries take typed
options rather than the whole flag namespace.

  from albert import common_flags
  common_flags.define_tokenizer_flags()
  common_flags.define_output_dir_flag("Where checkpoints are written.")
"""
import dataclasses
from typing import Optional

from absl import flags


def define_tokenizer_flags(flag_values=flags.FLAGS):
  """--spm_model_file, --vocab_file, --do_lower_case and
  --corrected_digit_comma."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_string(
      "spm_model_file", None,
      "The SentencePiece model of the (pre)trained model (ALBERT's "
      "30k-clean.model convention).", **kw)
  flags.DEFINE_string(
      "vocab_file", None,
      "A WordPiece vocabulary, used when no --spm_model_file is given.", **kw)
  flags.DEFINE_bool(
      "do_lower_case", True,
      "Lower-case the input. True for uncased models (every released ALBERT "
      "v2 model), and it must match pretraining.", **kw)
  flags.DEFINE_bool(
      "corrected_digit_comma", False,
      "SentencePiece mode: split a piece such as '1,' that continues a word "
      "into '1' ',' (Hugging Face's AlbertTokenizer) instead of upstream "
      "ALBERT's '▁1' ',' (its behaviour under Python 3, which pretrained "
      "BioALBERT). It must match pretraining.", **kw)


@dataclasses.dataclass(frozen=True)
class TokenizerOptions:
  """The arguments of `tokenization.FullTokenizer`."""
  spm_model_file: Optional[str] = None
  vocab_file: Optional[str] = None
  do_lower_case: bool = True
  corrected_digit_comma: bool = False

  @classmethod
  def from_flags(cls, flag_values=flags.FLAGS):
    return cls(spm_model_file=flag_values.spm_model_file,
               vocab_file=flag_values.vocab_file,
               do_lower_case=flag_values.do_lower_case,
               corrected_digit_comma=flag_values.corrected_digit_comma)

  def as_kwargs(self):
    return dataclasses.asdict(self)


def define_model_flags(flag_values=flags.FLAGS, init_checkpoint_help=None):
  """--albert_config_file and --init_checkpoint."""
  flags.DEFINE_string(
      "albert_config_file", None,
      "The ALBERT config json (model architecture).",
      flag_values=flag_values)
  flags.DEFINE_string(
      "init_checkpoint", None,
      init_checkpoint_help or
      "Initial checkpoint, usually of a pretrained ALBERT: a checkpoint "
      "prefix, or a directory whose latest checkpoint is taken.",
      flag_values=flag_values)


def define_spm_model_file_flag(help_text, flag_values=flags.FLAGS):
  """--spm_model_file alone, for tools that need no tokenizer (e.g.
  run_pretraining.py records and checks it)."""
  flags.DEFINE_string("spm_model_file", None, help_text,
                      flag_values=flag_values)


def define_output_dir_flag(help_text, default=None, flag_values=flags.FLAGS):
  """--output_dir."""
  flags.DEFINE_string("output_dir", default, help_text,
                      flag_values=flag_values)


def define_max_seq_length_flag(default, help_text, flag_values=flags.FLAGS):
  """--max_seq_length."""
  flags.DEFINE_integer("max_seq_length", default, help_text,
                       flag_values=flag_values)


def define_seed_flag(what, flag_values=flags.FLAGS):
  """--seed (not upstream), >= 0; `what` names what it seeds."""
  flags.DEFINE_integer(
      "seed", None,
      "Not upstream: seed of %s, so that a run can be repeated; unset: a "
      "different run each time, as upstream." % what,
      lower_bound=0, flag_values=flag_values)


def define_tpu_flags(iterations_per_loop=1000, save_checkpoints_steps=5000,
                     keep_checkpoint_max=5, flag_values=flags.FLAGS):
  """Upstream's TPU and checkpointing flags with per-script defaults; read
  them with `estimator_utils.TpuOptions.from_flags`."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_bool("use_tpu", False, "Whether to use TPU or GPU/CPU.", **kw)
  flags.DEFINE_string(
      "tpu_name", None,
      "The Cloud TPU to use: the name given when creating it, or a "
      "grpc://ip.address.of.tpu:8470 url.", **kw)
  flags.DEFINE_string(
      "tpu_zone", None,
      "[Optional] GCE zone of the Cloud TPU; detected from metadata if unset.",
      **kw)
  flags.DEFINE_string(
      "gcp_project", None,
      "[Optional] GCP project of the Cloud TPU; detected from metadata if "
      "unset.", **kw)
  flags.DEFINE_string("master", None, "[Optional] TensorFlow master URL.",
                      **kw)
  flags.DEFINE_integer(
      "num_tpu_cores", 8,
      "Only used if `use_tpu` is True. Total number of TPU cores to use.",
      **kw)
  flags.DEFINE_integer("iterations_per_loop", iterations_per_loop,
                       "How many steps to make in each estimator call.", **kw)
  flags.DEFINE_integer("save_checkpoints_steps", save_checkpoints_steps,
                       "How often to save the model checkpoint.", **kw)
  flags.DEFINE_integer("keep_checkpoint_max", keep_checkpoint_max,
                       "How many checkpoints to keep.", **kw)


def define_training_flags(flag_values=flags.FLAGS):
  """--precision, --gradient_accumulation_steps, --distribution,
  --num_cpu_replicas and --use_xla; read them with
  `precision.TrainingOptions.from_flags` (see albert/precision.py)."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_enum(
      "precision", "fp32", ["fp32", "bf16", "fp16"],
      "Compute precision; variables, optimizer state and loss stay float32. "
      "bf16: oneDNN bfloat16 rewrite on CPU, bfloat16 casts on TPU and "
      "Ampere+ GPUs. fp16: GPU float16 rewrite with dynamic loss scaling.",
      **kw)
  flags.DEFINE_integer(
      "gradient_accumulation_steps", 1,
      "K > 1: one optimizer update per K micro-batches of "
      "train_batch_size / K examples (same updates, K times less memory); "
      "steps count updates. CPU/GPU only.", **kw)
  flags.DEFINE_enum(
      "distribution", "none", ["none", "mirrored", "multi_worker"],
      "CPU/GPU data parallelism through the Estimator: mirrored = all local "
      "GPUs (or --num_cpu_replicas logical CPUs); multi_worker = the "
      "processes of TF_CONFIG's cluster (run_pretraining.py only; README). "
      "The global batch is split across replicas. TPU: use --use_tpu "
      "instead.", **kw)
  flags.DEFINE_integer(
      "num_cpu_replicas", 0,
      "With --distribution=mirrored and no GPU: split the CPU into this "
      "many logical devices (for testing).", **kw)
  flags.DEFINE_bool("use_xla", False,
                    "XLA JIT compilation of the graph (CPU/GPU).", **kw)
