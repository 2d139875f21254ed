# coding=utf-8
"""Learning-rate schedule, gradient clipping and the AdamW/LAMB train op.

Port of upstream ALBERT's `optimization.py` to `tensorflow.compat.v1`:
linear warmup then polynomial decay to 0, global-norm clipping at 1.0,
`tf.compat.v1.tpu.CrossShardOptimizer` on TPU, and an explicit global-step
increment (neither optimizer increments it itself).

Beyond upstream (`TrainOptions`, all CPU/GPU only; the reference path above
is used unchanged when none is set and no tf.distribute strategy is active):
- gradient accumulation: one update per K micro-batches, of the mean of
  their gradients, clipped as one batch; `global_step` counts updates, so
  the learning-rate schedule and --num_train_steps count updates. Each
  micro-batch's mean loss weighs the same, so this equals one K-times
  larger batch exactly when the micro-batches hold equally many loss
  positions (always for the sentence-order loss and fixed masking counts).
- tf.distribute (MirroredStrategy through the Estimator's
  train_distribute): gradients are averaged over replicas (a merge_call
  all-reduce) before clipping; every replica then applies the same update.
- dynamic loss scaling (fp16): the loss is multiplied by a scale variable
  (`loss_scale/current`, in the checkpoint), gradients divided by it; a step
  whose gradients are not finite is skipped and halves the scale, 2000
  finite steps double it.

  train_op = create_optimizer(loss, 1e-4, 1000, 100, False, "lamb",
                              train_options=TrainOptions(
                                  gradient_accumulation_steps=4))
"""
import dataclasses

from absl import logging
import tensorflow.compat.v1 as tf

from albert import lamb_optimizer

OPTIMIZERS = ("adamw", "lamb")

# Variables beside the model's: accumulators and loss scale.
ACCUMULATION_SCOPE = "gradient_accumulation"
LOSS_SCALE_SCOPE = "loss_scale"


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """How the train op turns gradients into updates (see module doc)."""
  gradient_accumulation_steps: int = 1
  loss_scale: bool = False

  def is_reference(self):
    return self.gradient_accumulation_steps == 1 and not self.loss_scale


def learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps,
                           global_step, poly_power=1.0, start_warmup_step=0):
  """Upstream's schedule as a scalar float32 tensor of `global_step`.

  Polynomial decay from `init_lr` to 0 over `num_train_steps` (counted from
  step 0); while `global_step - start_warmup_step < num_warmup_steps` it is
  replaced by `init_lr * (global_step - start_warmup_step) / num_warmup_steps`.
  As upstream, steps before `start_warmup_step` give a negative rate: the flag
  is meant for resuming at or after that step.
  """
  learning_rate = tf.constant(value=init_lr, shape=[], dtype=tf.float32)
  learning_rate = tf.train.polynomial_decay(
      learning_rate,
      global_step,
      num_train_steps,
      end_learning_rate=0.0,
      power=poly_power,
      cycle=False)
  if num_warmup_steps:
    global_steps_int = (tf.cast(global_step, tf.int32)
                        - tf.constant(start_warmup_step, dtype=tf.int32))
    warmup_steps_int = tf.constant(num_warmup_steps, dtype=tf.int32)
    warmup_percent_done = (tf.cast(global_steps_int, tf.float32)
                           / tf.cast(warmup_steps_int, tf.float32))
    warmup_learning_rate = init_lr * warmup_percent_done
    is_warmup = tf.cast(global_steps_int < warmup_steps_int, tf.float32)
    learning_rate = ((1.0 - is_warmup) * learning_rate
                     + is_warmup * warmup_learning_rate)
  return learning_rate


def _filter_excluded(tvars, excluded_tvars):
  """Drops variables named in `excluded_tvars` ("a/b" or "a/b:0")."""
  if not excluded_tvars:
    return tvars
  excluded = set(excluded_tvars)
  kept = []
  matched = set()
  for var in tvars:
    short_name = var.name.split(":")[0]
    hits = excluded.intersection((var.name, short_name))
    if hits:
      matched.update(hits)
    else:
      kept.append(var)
  unknown = sorted(excluded - matched)
  if unknown:
    logging.warning("excluded_tvars names no trainable variable: %s",
                    ", ".join(unknown))
  logging.info("Not training %d variable(s): %s", len(tvars) - len(kept),
               ", ".join(sorted(matched)))
  return kept


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu,
                     optimizer="adamw", poly_power=1.0, start_warmup_step=0,
                     colocate_gradients_with_ops=False, excluded_tvars=None,
                     train_options=None):
  """Creates an optimizer training op that also increments the global step.

  `train_options` (a `TrainOptions`) turns on accumulation or loss scaling.
  """
  train_options = train_options or TrainOptions()
  if optimizer not in OPTIMIZERS:
    raise ValueError("Not supported optimizer: %r (expected one of %s)"
                     % (optimizer, ", ".join(OPTIMIZERS)))
  if num_train_steps is None or num_train_steps <= 0:
    raise ValueError("num_train_steps must be positive, got %r"
                     % (num_train_steps,))
  if num_warmup_steps is not None and num_warmup_steps < 0:
    raise ValueError("num_warmup_steps must be >= 0, got %r"
                     % (num_warmup_steps,))

  global_step = tf.train.get_or_create_global_step()
  learning_rate = learning_rate_schedule(
      init_lr, num_train_steps, num_warmup_steps, global_step,
      poly_power=poly_power, start_warmup_step=start_warmup_step)
  logging.info(
      "Optimizer %s: init_lr=%g, linear warmup over %d steps starting at step "
      "%d, then polynomial decay (power %g) to 0 at step %d; clip global "
      "norm 1.0; use_tpu=%s", optimizer, init_lr, num_warmup_steps or 0,
      start_warmup_step, poly_power, num_train_steps, use_tpu)

  # Fine-tuning with AdamW from a LAMB-pretrained model is fine; the m/v
  # slots are not restored from init_checkpoint by the callers.
  common = dict(
      learning_rate=learning_rate,
      weight_decay_rate=0.01,
      beta_1=0.9,
      beta_2=0.999,
      epsilon=1e-6,
      exclude_from_weight_decay=list(
          lamb_optimizer.DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY))
  if optimizer == "adamw":
    opt = AdamWeightDecayOptimizer(**common)
  else:
    opt = lamb_optimizer.LAMBOptimizer(**common)

  if use_tpu:
    opt = tf.tpu.CrossShardOptimizer(opt)

  tvars = _filter_excluded(tf.trainable_variables(), excluded_tvars)
  if not train_options.is_reference() or tf.distribute.has_strategy():
    if use_tpu:
      raise ValueError("accumulation, loss scaling and tf.distribute are "
                       "for CPU/GPU; TPUEstimator shards by itself")
    return _replicated_train_op(loss, tvars, opt, global_step, train_options,
                                colocate_gradients_with_ops)
  grads = tf.gradients(
      loss, tvars, colocate_gradients_with_ops=colocate_gradients_with_ops)

  # This is how the model was pre-trained.
  (grads, _) = tf.clip_by_global_norm(grads, clip_norm=1.0)

  train_op = opt.apply_gradients(
      list(zip(grads, tvars)), global_step=global_step)

  # The increment waits for the update so that every read of the global step
  # for this step's learning rate sees the old value.
  with tf.control_dependencies([train_op]):
    new_global_step = global_step + 1
    increment = global_step.assign(new_global_step)
  return tf.group(train_op, increment)


def _local_variable(name, shape, dtype, value=0):
  """A non-trainable variable every replica keeps (and updates) alike."""
  return tf.get_variable(
      name, shape=shape, dtype=dtype, trainable=False,
      initializer=tf.constant_initializer(value),
      synchronization=tf.VariableSynchronization.ON_READ,
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class DynamicLossScale(object):
  """A loss scale that halves on overflow and doubles after
  `growth_interval` finite steps (the scheme of tf.mixed_precision)."""

  def __init__(self, initial=2.0 ** 15, growth_interval=2000):
    with tf.variable_scope(LOSS_SCALE_SCOPE):
      self.scale = _local_variable("current", [], tf.float32, initial)
      self.good_steps = _local_variable("good_steps", [], tf.int64)
    self.growth_interval = growth_interval

  def update(self, finite):
    """Ops that move the scale after a step whose gradients were `finite`."""
    good = self.good_steps + 1
    grow = good >= self.growth_interval
    scale = tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale),
                     tf.maximum(self.scale / 2.0, 1.0))
    good = tf.where(tf.logical_and(finite, tf.logical_not(grow)), good,
                    tf.zeros_like(good))
    return tf.group(self.scale.assign(scale), self.good_steps.assign(good))


def _all_finite(tensors):
  return tf.reduce_all([tf.reduce_all(tf.is_finite(t)) for t in tensors])


def _mean_over_replicas(strategy, grads, tvars):
  """merge_call body: each gradient averaged over replicas, placed on
  every copy of its variable."""
  return strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.MEAN,
                                           list(zip(grads, tvars)))


def _replica_gradients(loss, tvars, loss_scale, colocate):
  """Dense gradients averaged over replicas (unscaled when scaling)."""
  scaled = loss * loss_scale.scale if loss_scale else loss
  grads = tf.gradients(scaled, tvars, colocate_gradients_with_ops=colocate)
  grads = [tf.zeros_like(v) if g is None else lamb_optimizer._as_dense(g)  # pylint: disable=protected-access
           for g, v in zip(grads, tvars)]
  context = tf.distribute.get_replica_context()
  if context.num_replicas_in_sync > 1:
    # merge_call, not context.all_reduce: in graph mode all_reduce wraps
    # the reduction in a custom gradient that looks the other replicas'
    # variables up by name and fails ("Unsuccessful at finding variable
    # .../replica_1").
    grads = context.merge_call(_mean_over_replicas, args=(grads, tvars))
  if loss_scale:
    grads = [g / loss_scale.scale for g in grads]
  return grads


def _accumulate(grads, tvars, steps):
  """(mean gradients so far, whether this micro-batch is the K-th, ops that
  update the accumulators; they must run after the update)."""
  with tf.variable_scope(ACCUMULATION_SCOPE):
    micro_step = _local_variable("micro_step", [], tf.int64)
    sums = [_local_variable(v.op.name, v.shape, tf.float32) for v in tvars]
  totals = [s.read_value() + g for s, g in zip(sums, grads)]
  last = tf.equal((micro_step + 1) % steps, 0)
  keep = 1.0 - tf.cast(last, tf.float32)

  def after_update():
    return [micro_step.assign(micro_step + 1)] + [
        s.assign(t * keep) for s, t in zip(sums, totals)]

  return [t / float(steps) for t in totals], last, after_update


def _replicated_train_op(loss, tvars, opt, global_step, options, colocate):
  """The train op with accumulation / loss scaling / replicas."""
  loss_scale = DynamicLossScale() if options.loss_scale else None
  grads = _replica_gradients(loss, tvars, loss_scale, colocate)
  should_apply = tf.constant(True)
  after = []
  if loss_scale:
    finite = _all_finite(grads)
    after.append(lambda: [loss_scale.update(finite)])
    # An overflowing micro-batch adds nothing (and skips a plain update).
    grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
    should_apply = finite
  if options.gradient_accumulation_steps > 1:
    grads, last, after_update = _accumulate(
        grads, tvars, options.gradient_accumulation_steps)
    after.append(after_update)
    should_apply = last
  (grads, _) = tf.clip_by_global_norm(grads, clip_norm=1.0)
  train_op = opt.apply_gradients(list(zip(grads, tvars)),
                                 should_apply=should_apply)
  # State updates wait for the step that read the old state.
  with tf.control_dependencies([train_op]):
    updates = [op for make_ops in after for op in make_ops()]
    increment = global_step.assign(
        global_step + tf.cast(should_apply, global_step.dtype))
  return tf.group(train_op, increment, *updates)


class AdamWeightDecayOptimizer(lamb_optimizer.DecoupledWeightDecayOptimizer):
  """A basic Adam optimizer that includes "correct" L2 weight decay."""

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               name="AdamWeightDecayOptimizer"):
    super(AdamWeightDecayOptimizer, self).__init__(
        learning_rate,
        weight_decay_rate=weight_decay_rate,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        exclude_from_weight_decay=exclude_from_weight_decay,
        name=name)
