"""TPUEstimator plumbing shared by run_pretraining.py and run_ner.py.

Upstream rebuilds the cluster resolver, RunConfig and TPUEstimator in every
run_*.py; here the TPU flags are defined once (`common_flags.
define_tpu_flags`), read into a `TpuOptions`, and the estimator is built by
one function, so the scripts only hold what is specific to their task.

Off TPU the estimator also takes the session config of `albert.precision`
(grappler mixed-precision rewrite, XLA) and, for --distribution, a
tf.distribute strategy: then it is a plain `tf.estimator.Estimator` with
`train_distribute`, running the same model_fn (its TPUEstimatorSpec turned
into an EstimatorSpec), and the input_fn's `batch_size` is the global batch
divided by the number of replicas (each replica reads its own batches).
Training goes through `train`: with --distribution=multi_worker each worker
process runs it with the same flags and TF_CONFIG, and TF 2.15's Estimator
runs a MultiWorkerMirroredStrategy only through `train_and_evaluate` (its
distribute coordinator), so `train` takes that route there.
"""
import contextlib
import dataclasses
import os
import time
from typing import Optional

from absl import logging
import tensorflow.compat.v1 as tf

from albert import modeling
from albert import precision


@dataclasses.dataclass(frozen=True)
class TpuOptions:
  """Where and how the estimator runs (the flags of
  `common_flags.define_tpu_flags`)."""
  use_tpu: bool = False
  tpu_name: Optional[str] = None
  tpu_zone: Optional[str] = None
  gcp_project: Optional[str] = None
  master: Optional[str] = None
  num_tpu_cores: int = 8
  iterations_per_loop: int = 1000
  save_checkpoints_steps: int = 5000
  keep_checkpoint_max: int = 5

  @classmethod
  def from_flags(cls, flag_values):
    return cls(**{f.name: flag_values[f.name].value
                  for f in dataclasses.fields(cls)})


def make_run_config(tpu_options, output_dir, session_config=None):
  """A TPU RunConfig from a `TpuOptions` (or anything with its fields)."""
  cluster = None
  if tpu_options.use_tpu and tpu_options.tpu_name:
    cluster = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu_options.tpu_name, zone=tpu_options.tpu_zone,
        project=tpu_options.gcp_project)
  per_host = tf.estimator.tpu.InputPipelineConfig.PER_HOST_V2
  # TPUEstimator logs loss and steps/s every ceil(log_step_count_steps /
  # iterations_per_loop) session runs. Off TPU a run is one step, so scale it
  # to keep logging every 100 steps instead of every step.
  log_steps = 100
  if not tpu_options.use_tpu:
    log_steps *= max(1, tpu_options.iterations_per_loop)
  return tf.estimator.tpu.RunConfig(
      cluster=cluster,
      master=tpu_options.master,
      model_dir=output_dir,
      save_checkpoints_steps=tpu_options.save_checkpoints_steps,
      keep_checkpoint_max=tpu_options.keep_checkpoint_max,
      log_step_count_steps=log_steps,
      session_config=session_config,
      tpu_config=tf.estimator.tpu.TPUConfig(
          iterations_per_loop=tpu_options.iterations_per_loop,
          num_shards=tpu_options.num_tpu_cores,
          per_host_input_for_training=per_host))


def make_estimator(model_fn, tpu_options, output_dir, train_batch_size,
                   eval_batch_size, predict_batch_size=None, params=None,
                   session_config=None, strategy=None):
  """A TPUEstimator that falls back to CPU/GPU when use_tpu is false.

  `tpu_options` is a `TpuOptions` (anything with its fields works). With a
  `strategy`, a distributed `tf.estimator.Estimator` (CPU/GPU only).
  """
  if strategy is not None:
    return _distributed_estimator(model_fn, tpu_options, output_dir,
                                  train_batch_size, session_config, strategy,
                                  params)
  return tf.estimator.tpu.TPUEstimator(
      use_tpu=tpu_options.use_tpu,
      model_fn=model_fn,
      config=make_run_config(tpu_options, output_dir, session_config),
      params=params,
      train_batch_size=train_batch_size,
      eval_batch_size=eval_batch_size,
      predict_batch_size=predict_batch_size or eval_batch_size)


def _distributed_estimator(model_fn, tpu_options, output_dir, batch_size,
                           session_config, strategy, params):
  """An Estimator training through `strategy` (the global batch is split
  over its replicas); evaluation and prediction run on one device."""

  def estimator_model_fn(features, labels, mode, params):
    spec = model_fn(features, labels, mode, params)
    if isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec):
      spec = spec.as_estimator_spec()
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    if spec.loss is not None and replicas > 1:
      # The Estimator logs the SUM of the replicas' losses (it expects V1
      # optimizers to have scaled them); each replica's share makes that
      # sum the mean loss of the global batch. Training is unaffected.
      spec = spec._replace(loss=spec.loss / replicas)
    return spec

  config = tf.estimator.RunConfig(
      model_dir=output_dir,
      save_checkpoints_steps=tpu_options.save_checkpoints_steps,
      keep_checkpoint_max=tpu_options.keep_checkpoint_max,
      log_step_count_steps=100,
      session_config=session_config,
      train_distribute=strategy)
  # Each replica takes its own element of the input_fn's dataset (the
  # strategy's iterator deals them out in turn), so the input_fn batches per
  # replica: together one step sees the global batch, in the order that
  # one device would.
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise precision.TrainingSetupError(
        "the train batch of %d per update is not divisible by the %d "
        "replicas of --distribution" % (batch_size, replicas))
  params = dict(params or {}, batch_size=batch_size // replicas)
  return tf.estimator.Estimator(estimator_model_fn, config=config,
                                params=params)


def is_multi_worker(estimator):
  """Whether `estimator` trains across the processes of a cluster."""
  strategy = estimator.config.train_distribute
  return bool(strategy is not None and
              strategy.extended.experimental_between_graph)


def train(estimator, input_fn, max_steps, hooks=None):
  """`estimator.train`, or on a multi-worker estimator the same through
  `tf.estimator.train_and_evaluate` (workers only train; evaluate on the
  chief afterwards, see `outside_cluster`), each worker keeping its share
  of the input_fn's batches. Call it once per process there: a second
  call waits forever for the cluster's collectives."""
  if not is_multi_worker(estimator):
    return estimator.train(input_fn, max_steps=max_steps, hooks=hooks)
  train_spec = tf.estimator.TrainSpec(_per_worker(input_fn),
                                      max_steps=max_steps, hooks=hooks or ())
  # Only an "evaluator" task would read it; the cluster has none.
  eval_spec = tf.estimator.EvalSpec(input_fn, steps=1)
  tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)


def _per_worker(input_fn):
  """Worker i of W takes batches i, i+W, ... of the input_fn's dataset, as
  the replicas of one MirroredStrategy take turns: together one step sees
  the global batch a single device would. (Each worker reads the whole
  input to do so.)"""

  def sharded(params, input_context=None):
    dataset = input_fn(params)
    if input_context is not None and input_context.num_input_pipelines > 1:
      dataset = dataset.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)
    return dataset

  return sharded


@contextlib.contextmanager
def outside_cluster():
  """Estimators built inside ignore TF_CONFIG: the chief of a multi-worker
  run evaluates on its own, as a single-device run."""
  saved = os.environ.pop("TF_CONFIG", None)
  try:
    yield
  finally:
    if saved is not None:
      os.environ["TF_CONFIG"] = saved


def init_from_checkpoint(init_checkpoint, use_tpu, num_of_group=1):
  """Restores trainable variables found in `init_checkpoint`.

  Returns (scaffold_fn, initialized_variable_names). On TPU the restore must
  run inside the scaffold, so it is deferred to `scaffold_fn`. Every trainable
  variable is logged as restored or freshly initialised.
  """
  tvars = tf.trainable_variables()
  scaffold_fn = None
  initialized = {}
  if init_checkpoint:
    assignment_map, initialized = modeling.get_assignment_map_from_checkpoint(
        tvars, init_checkpoint, num_of_group)
    if num_of_group == 0:
      assignment_maps = [assignment_map]
    else:
      assignment_maps = [assignment_map[gid] for gid in range(num_of_group)]

    def restore():
      for amap in assignment_maps:
        tf.train.init_from_checkpoint(init_checkpoint, amap)

    if use_tpu:
      def tpu_scaffold():
        restore()
        return tf.train.Scaffold()
      scaffold_fn = tpu_scaffold
    else:
      restore()

  fresh = 0
  logging.info("**** Trainable Variables ****")
  for var in tvars:
    if var.name in initialized:
      note = ", *INIT_FROM_CKPT*"
    else:
      note = ", *FRESH*" if init_checkpoint else ""
      fresh += 1
    logging.info("  name = %s, shape = %s%s", var.name, var.shape, note)
  if init_checkpoint:
    logging.info("Restored %d of %d trainable variables from %s; %d fresh.",
                 len(tvars) - fresh, len(tvars), init_checkpoint, fresh)
  return scaffold_fn, initialized


# Graph collection of the training loss, read by ThroughputHook. Filled only
# off TPU: on TPU the loss lives inside the training loop, out of a hook's
# reach.
TRAINING_LOSS = "bioalbert_training_loss"


def record_training_loss(loss, use_tpu):
  if not use_tpu:
    tf.add_to_collection(TRAINING_LOSS, loss)


class ThroughputHook(tf.estimator.SessionRunHook):
  """Logs steps/s, examples/s and an ETA every `every_n_steps` steps, and
  the mean training loss of the steps it saw since the last line (when
  the model_fn recorded it with `record_training_loss`; replicas' losses
  are averaged)."""

  def __init__(self, batch_size, max_steps, every_n_steps=100):
    self._batch_size = batch_size
    self._max_steps = max_steps
    self._every = max(1, every_n_steps)
    self._last = None
    self._losses = []

  def begin(self):
    self._global_step = tf.train.get_or_create_global_step()
    losses = tf.get_collection(TRAINING_LOSS)
    self._loss = None
    if losses:
      self._loss = tf.add_n([tf.cast(l, tf.float32) for l in losses]) / len(
          losses)

  def before_run(self, run_context):
    if self._loss is not None:
      return tf.estimator.SessionRunArgs(self._loss)
    return None

  def after_run(self, run_context, run_values):
    if self._loss is not None:
      self._losses.append(float(run_values.results))
    # Read after the step: fetched with the train op, the step races its
    # increment and a line could cover one step more or less than it says.
    step = int(run_context.session.run(self._global_step))
    now = time.time()
    if self._last is None:
      self._last = (step, now)
      return
    last_step, last_time = self._last
    if step - last_step < self._every:
      return
    steps_per_sec = (step - last_step) / max(now - last_time, 1e-9)
    eta = (self._max_steps - step) / steps_per_sec if self._max_steps else 0.0
    loss = ""
    if self._losses:
      loss = "loss %.4f, " % (sum(self._losses) / len(self._losses))
    logging.info("step %d/%s: %s%.3f steps/s, %.1f examples/s, ETA %s",
                 step, self._max_steps, loss, steps_per_sec,
                 steps_per_sec * self._batch_size, format_seconds(eta))
    self._last = (step, now)
    self._losses = []


def format_seconds(seconds):
  seconds = int(max(seconds, 0))
  return "%d:%02d:%02d" % (seconds // 3600, seconds % 3600 // 60, seconds % 60)
