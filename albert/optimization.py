# coding=utf-8
"""Learning-rate schedule, gradient clipping and the AdamW/LAMB train op.

Port of upstream ALBERT's `optimization.py` to `tensorflow.compat.v1`:
linear warmup then polynomial decay to 0, global-norm clipping at 1.0,
`tf.compat.v1.tpu.CrossShardOptimizer` on TPU, and an explicit global-step
increment (neither optimizer increments it itself).
"""

from absl import logging
import tensorflow.compat.v1 as tf

from albert import lamb_optimizer

OPTIMIZERS = ("adamw", "lamb")


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
                     colocate_gradients_with_ops=False, excluded_tvars=None):
  """Creates an optimizer training op that also increments the global step."""
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
