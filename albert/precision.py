"""Where and how training computes: precision, accumulation, replicas, XLA.

One implementation behind run_pretraining.py and run_ner.py (flags:
`common_flags.define_training_flags`; options: `TrainingOptions`).

  opts = TrainingOptions.from_flags(flags.FLAGS)
  plan = precision.plan(opts, use_tpu=False)   # finds devices, logs, warns
  config = precision.session_config(plan)      # grappler / XLA settings
  strategy = precision.make_strategy(plan)     # None or a MirroredStrategy

Precision (`--precision`). Variables, optimizer state, the loss and the
attention softmax stay float32 in every mode; only matmuls and
activations go low:
- fp32: nothing changes (the reference path).
- bf16 on CPU: grappler's `auto_mixed_precision_onednn_bfloat16` rewrite
  (session config) turns matmuls, einsums and activations into oneDNN
  bfloat16 kernels with casts around them; softmax, layer-norm moments and
  reductions stay float32 by the rewrite's own lists.
- bf16 on TPU or GPU: explicit casts. The encoder reads float32 variables
  through a custom getter that casts them to bfloat16 (`plan.compute_dtype`
  -> `modeling.AlbertModel(compute_dtype=...)`);
  layer norm and the attention softmax (with its mask) run in float32;
  the encoder output is cast back to float32 for the heads and the loss.
- fp16 (GPU): grappler's `auto_mixed_precision` (CUDA) rewrite plus dynamic
  loss scaling (`optimization.DynamicLossScale`, whose scale is a variable
  in the checkpoint). On CPU the rewrite has no fp16 kernels to use, so the
  graph runs float32 with the loss scaling in place (a warning says so).

Distribution (`--distribution`): mirrored splits each batch over the local
GPUs (or --num_cpu_replicas logical CPUs); multi_worker over the processes
of TF_CONFIG's cluster (`worker_task`), one replica each (or their GPUs),
through `estimator_utils.train`.

Upstream ALBERT trains float32 on one TPU slice only; none of this exists
there.
"""
import dataclasses
import json
import os

from absl import logging
import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import rewriter_config_pb2

PRECISIONS = ("fp32", "bf16", "fp16")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")


class TrainingSetupError(ValueError):
  """A training setting that cannot work (reported as one line)."""


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
  """The flags of `common_flags.define_training_flags`."""
  precision: str = "fp32"
  gradient_accumulation_steps: int = 1
  distribution: str = "none"
  num_cpu_replicas: int = 0
  use_xla: bool = False

  @classmethod
  def from_flags(cls, flag_values):
    return cls(**{f.name: flag_values[f.name].value
                  for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class WorkerTask:
  """This process's place in TF_CONFIG's cluster (--distribution=
  multi_worker)."""
  type: str          # "chief" or "worker"
  index: int
  num_workers: int   # chief + workers: one replica each (or its GPUs)
  has_chief: bool

  @property
  def is_chief(self):
    """The chief writes checkpoints and summaries, holds the output_dir's
    lock and evaluates; without a "chief" task it is worker 0."""
    if self.has_chief:
      return self.type == "chief"
    return self.index == 0


def worker_task(environ=None):
  """The `WorkerTask` of TF_CONFIG; raises TrainingSetupError when it is
  missing or is not a cluster of "chief"/"worker" tasks holding ours."""
  raw = (os.environ if environ is None else environ).get("TF_CONFIG")
  if not raw:
    raise TrainingSetupError(
        "--distribution=multi_worker needs TF_CONFIG (the cluster and this "
        "process's task, e.g. {\"cluster\": {\"worker\": [\"host1:2222\", "
        "\"host2:2222\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}})")
  try:
    config = json.loads(raw)
    cluster, task = config["cluster"], config["task"]
    kind, index = task["type"], int(task["index"])
    hosts = {k: list(cluster.get(k, [])) for k in ("chief", "worker")}
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise TrainingSetupError(
        "TF_CONFIG is not a cluster with this process's task (%s: %s)" %
        (type(e).__name__, e)) from e
  if kind not in hosts or not 0 <= index < len(hosts[kind]):
    raise TrainingSetupError(
        "TF_CONFIG: task %s %d is not among the cluster's chief/worker "
        "tasks (%s)" % (kind, index, hosts))
  return WorkerTask(kind, index, len(hosts["chief"]) + len(hosts["worker"]),
                    bool(hosts["chief"]))


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `plan` decided: the device kind and how each setting is done."""
  options: TrainingOptions
  device: str          # "tpu", "gpu" or "cpu"
  num_gpus: int
  rewrite: str         # grappler mixed-precision rewrite, or ""
  compute_dtype: object  # tf.float32 or tf.bfloat16 (explicit casts)
  loss_scale: bool     # dynamic loss scaling


def validate(opts, use_tpu, train_batch_size=None):
  """Raises TrainingSetupError for settings no run can use.

  With `train_batch_size` (examples per update), also checks that each
  micro-batch splits evenly over the mirrored replicas."""
  if opts.precision not in PRECISIONS:
    raise TrainingSetupError("--precision must be one of %s, got %r" %
                             ("|".join(PRECISIONS), opts.precision))
  if opts.distribution not in DISTRIBUTIONS:
    raise TrainingSetupError("--distribution must be one of %s, got %r" %
                             ("|".join(DISTRIBUTIONS), opts.distribution))
  if opts.gradient_accumulation_steps < 1:
    raise TrainingSetupError("--gradient_accumulation_steps must be >= 1")
  if opts.num_cpu_replicas < 0:
    raise TrainingSetupError("--num_cpu_replicas must be >= 0")
  if use_tpu:
    if opts.distribution != "none":
      raise TrainingSetupError(
          "--distribution is for CPU/GPU: on TPU, TPUEstimator shards "
          "over --num_tpu_cores already")
    if opts.precision == "fp16":
      raise TrainingSetupError("TPUs have no fp16: use --precision=bf16")
    if opts.use_xla:
      raise TrainingSetupError("--use_xla is for CPU/GPU (TPU is XLA)")
    if opts.gradient_accumulation_steps > 1:
      raise TrainingSetupError(
          "--gradient_accumulation_steps is for CPU/GPU; on TPU use more "
          "cores for a larger batch")
  if opts.distribution == "multi_worker":
    if opts.num_cpu_replicas:
      raise TrainingSetupError(
          "--num_cpu_replicas is for --distribution=mirrored; each "
          "multi_worker process is one replica (or all its GPUs)")
    worker_task()  # refuses a missing or malformed TF_CONFIG
  replicas = num_mirrored_replicas(opts)
  if train_batch_size and replicas > 1:
    micro = train_batch_size // opts.gradient_accumulation_steps
    if micro % replicas:
      raise TrainingSetupError(
          "--distribution=mirrored: the batch of %d per session run (train "
          "batch / --gradient_accumulation_steps) does not split over %d "
          "replicas" % (micro, replicas))


def visible_gpus():
  return tf.config.list_physical_devices("GPU")


def num_mirrored_replicas(opts):
  """Replicas of --distribution=mirrored (1 otherwise): every visible GPU,
  else --num_cpu_replicas logical CPUs."""
  if opts.distribution != "mirrored":
    return 1
  return len(visible_gpus()) or max(1, opts.num_cpu_replicas)


def plan(opts, use_tpu=False):
  """Checks `opts` against the devices found; logs and returns a `Plan`."""
  validate(opts, use_tpu)
  gpus = [] if use_tpu else visible_gpus()
  device = "tpu" if use_tpu else ("gpu" if gpus else "cpu")
  rewrite, dtype, loss_scale = "", tf.float32, False
  if opts.precision == "bf16":
    if device == "cpu":
      rewrite = "auto_mixed_precision_onednn_bfloat16"
    else:
      dtype = tf.bfloat16
  elif opts.precision == "fp16":
    rewrite, loss_scale = "auto_mixed_precision", True
  result = Plan(opts, device, len(gpus), rewrite, dtype, loss_scale)
  _log_plan(result)
  return result


def _log_plan(p):
  opts = p.options
  cpus = tf.config.list_physical_devices("CPU")
  logging.info(
      "Devices: %s; %d CPU, %d GPU. Training: precision %s (%s), "
      "gradient_accumulation_steps %d, distribution %s, XLA %s.",
      p.device.upper(), len(cpus), p.num_gpus, opts.precision,
      describe(p), opts.gradient_accumulation_steps, opts.distribution,
      "on" if opts.use_xla else "off")
  if p.device == "cpu":
    if opts.precision == "bf16" and not cpu_has_bf16():
      logging.warning(
          "--precision=bf16: this CPU has no AVX512-BF16/AMX, so TensorFlow "
          "skips the oneDNN bfloat16 rewrite and the graph runs float32.")
    if opts.precision == "fp16":
      logging.warning(
          "--precision=fp16 is a GPU setting but no GPU is visible: the "
          "graph runs float32 on CPU (with loss scaling); use bf16 on CPU.")
    if opts.distribution == "mirrored" and not opts.num_cpu_replicas:
      logging.warning(
          "--distribution=mirrored without a visible GPU: one CPU replica "
          "(set --num_cpu_replicas=N to test with N logical CPUs).")
    if opts.use_xla:
      logging.info("--use_xla on CPU: measured slower for ALBERT here; "
                   "meant for GPUs (see README).")


def cpu_has_bf16():
  """Whether the CPU has native bfloat16 (AVX512-BF16 or AMX-BF16), which
  TensorFlow's oneDNN bfloat16 rewrite needs (it is skipped otherwise)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags_line = next((l for l in f if l.startswith("flags")), "")
  except OSError:
    return False
  found = set(flags_line.split())
  return bool(found & {"avx512_bf16", "amx_bf16"})


def describe(p):
  if p.options.precision == "fp32":
    return "float32"
  if p.rewrite == "auto_mixed_precision_onednn_bfloat16":
    return "oneDNN bfloat16 graph rewrite, float32 variables"
  if p.rewrite == "auto_mixed_precision":
    return "CUDA float16 graph rewrite + dynamic loss scaling"
  return "bfloat16 compute through casts, float32 variables"


def session_config(p):
  """A ConfigProto with the plan's grappler rewrite and XLA setting (None
  on TPU, where TPUEstimator makes its own)."""
  if p.device == "tpu":
    return None
  config = tf.ConfigProto(allow_soft_placement=True)
  rewrites = config.graph_options.rewrite_options
  if p.rewrite:
    setattr(rewrites, p.rewrite, rewriter_config_pb2.RewriterConfig.ON)
  if p.options.use_xla:
    config.graph_options.optimizer_options.global_jit_level = (
        tf.OptimizerOptions.ON_1)
  return config


def configure_cpu_replicas(opts):
  """Splits the CPU into `num_cpu_replicas` logical devices (for mirrored
  runs without GPUs). Must run before TensorFlow's runtime starts."""
  if opts.distribution == "none" or opts.num_cpu_replicas < 2:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  configs = [tf.config.LogicalDeviceConfiguration()] * opts.num_cpu_replicas
  try:
    tf.config.set_logical_device_configuration(cpu, configs)
  except RuntimeError as e:
    found = len(tf.config.list_logical_devices("CPU"))
    if found != opts.num_cpu_replicas:
      raise TrainingSetupError(
          "--num_cpu_replicas=%d: TensorFlow already started with %d CPU "
          "devices (%s)" % (opts.num_cpu_replicas, found, e)) from e


def make_strategy(p):
  """None (one device), a MirroredStrategy or a MultiWorkerMirroredStrategy
  for the Estimator's train_distribute."""
  opts = p.options
  if opts.distribution == "none":
    return None
  if opts.distribution == "multi_worker":
    return _multi_worker_strategy()
  # The all-reduce is chosen here, not by TensorFlow: a MirroredStrategy
  # built while eager execution is on (TF2's default, as in these scripts)
  # picks CollectiveAllReduce (RING on CPU), whose collective ops never
  # complete in the Estimator's tf.Session (the first step waits forever).
  # TensorFlow itself falls back to ReductionToOneDevice for CPUs when the
  # strategy is built in graph mode (mirrored_strategy.py,
  # _make_collective_ops_with_fallbacks). GPUs get the NCCL all-reduce ops
  # of TF1 sessions (not collectives).
  if p.num_gpus:
    devices = ["/gpu:%d" % i for i in range(p.num_gpus)]
    cross_device_ops = tf.distribute.NcclAllReduce()
  else:
    count = max(1, opts.num_cpu_replicas)
    devices = ["/cpu:%d" % i for i in range(count)]
    cross_device_ops = tf.distribute.ReductionToOneDevice()
  logging.info("MirroredStrategy over %s (%s)", ", ".join(devices),
               type(cross_device_ops).__name__)
  return tf.distribute.MirroredStrategy(devices=devices,
                                        cross_device_ops=cross_device_ops)


def _multi_worker_strategy():
  # Built eagerly the strategy needs collectives configured at program
  # start ("Collective ops must be configured at program startup"); in
  # graph mode the Estimator's distribute coordinator configures each
  # worker's session and server itself (`estimator_utils.train`, through
  # train_and_evaluate). The Estimator builds graphs anyway, so nothing
  # after this point needs eager execution.
  tf.disable_eager_execution()
  task = worker_task()
  strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
  logging.info("MultiWorkerMirroredStrategy: %s %d of %d tasks%s, %d "
               "replicas in sync", task.type, task.index, task.num_workers,
               " (chief)" if task.is_chief else "",
               strategy.num_replicas_in_sync)
  return strategy
