# coding=utf-8
"""LAMB: Adam with decoupled weight decay and a layer-wise trust ratio.

Port of upstream ALBERT's `lamb_optimizer.py` (You et al., "Reducing BERT
Pre-Training Time from 3 Days to 76 Minutes", arXiv:1904.00962) to
`tensorflow.compat.v1` graph mode. Moments live in variables named
`<param>/adam_m` and `<param>/adam_v` exactly as upstream, so checkpoints
written by either implementation load into the other. As upstream, there is no
bias correction and `apply_gradients` does not touch `global_step`
(`optimization.create_optimizer` increments it).

One deliberate change: upstream groups every assign of a step with no
ordering, so with reference variables (graph mode after
`disable_v2_behavior`) an assign can overwrite a parameter while another
variable's gradient is still reading it, and two identical runs diverge.
Here every assign of a step waits for all gradients of that step and for the
variable's own new values, so each step reads the old state and then writes.
"""

import re

import tensorflow.compat.v1 as tf

# Upstream's `create_optimizer` passes this list for both AdamW and LAMB.
DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


def _matches_any(patterns, param_name):
  return any(re.search(p, param_name) is not None for p in patterns or ())


def _as_dense(grad):
  # Embedding gradients arrive as IndexedSlices on CPU/GPU; the moment
  # updates below are dense, as upstream's implicit conversion made them.
  if isinstance(grad, tf.IndexedSlices):
    return tf.convert_to_tensor(grad)
  return grad


def _assign_all(strategy, params, values):
  """merge_call body: writes each replica's new value into its copy."""
  return tf.group([
      strategy.extended.update(param, lambda var, value: var.assign(value),
                               args=(value,), group=True)
      for param, value in zip(params, values)])


class DecoupledWeightDecayOptimizer(tf.train.Optimizer):
  """Adam without bias correction plus decoupled weight decay.

  The step shared by `AdamWeightDecayOptimizer` (optimization.py) and
  `LAMBOptimizer`; subclasses only choose the per-variable `_update_ratio`.
  """

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               name="DecoupledWeightDecayOptimizer"):
    super(DecoupledWeightDecayOptimizer, self).__init__(False, name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = exclude_from_weight_decay

  def apply_gradients(self, grads_and_vars, global_step=None, name=None,
                      should_apply=None):
    """Builds one update of every (grad, param) pair; returns a grouped op.

    `global_step` is accepted for the base-class signature and ignored, as
    upstream. With `should_apply` (a scalar bool tensor) parameters and
    moments keep their values where it is false (a skipped accumulation or
    overflow step). Under a tf.distribute strategy (or with `should_apply`)
    the update runs per replica on identical, already reduced gradients:
    moments are replica-local (ON_READ) copies and parameters are written
    through the strategy (`_apply_replicated`).
    """
    del global_step
    pairs = [(_as_dense(g), p) for (g, p) in grads_and_vars
             if g is not None and p is not None]
    if should_apply is not None or tf.distribute.has_strategy():
      return self._apply_replicated(pairs, should_apply, name)
    # Every op that reads a parameter for this step's gradients is an ancestor
    # of some gradient, so waiting for all of them orders reads before writes.
    grads_done = tf.group(*[g for (g, _) in pairs])
    assignments = []
    for (grad, param) in pairs:
      param_name = self._get_variable_name(param.name)
      m, v = self._create_slots_for(param, param_name)
      next_param, next_m, next_v = self._next_values(
          grad, param, param_name, m, v)
      with tf.control_dependencies([grads_done, next_param, next_m, next_v]):
        assignments.extend([param.assign(next_param),
                            m.assign(next_m),
                            v.assign(next_v)])
    return tf.group(*assignments, name=name)

  def _apply_replicated(self, pairs, should_apply, name):
    """The update in a replica context (the default one included)."""
    grads_done = tf.group(*[g for (g, _) in pairs])
    slot_assignments, params, values = [], [], []
    for (grad, param) in pairs:
      param_name = self._get_variable_name(param.name)
      m, v = self._create_slots_for(param, param_name, replica_local=True)
      next_param, next_m, next_v = self._next_values(
          grad, param, param_name, m, v)
      if should_apply is not None:
        next_param = tf.where(should_apply, next_param, param)
        next_m = tf.where(should_apply, next_m, m)
        next_v = tf.where(should_apply, next_v, v)
      with tf.control_dependencies([grads_done, next_param, next_m, next_v]):
        slot_assignments.extend([m.assign(next_m), v.assign(next_v)])
        params.append(param)
        values.append(tf.identity(next_param))
    context = tf.distribute.get_replica_context()
    param_assignments = context.merge_call(_assign_all,
                                           args=(params, values))
    return tf.group(slot_assignments, param_assignments, name=name)

  def _create_slots_for(self, param, param_name, replica_local=False):
    """`<param>/adam_m` and `<param>/adam_v` (replica-local copies under a
    strategy: every replica applies the same update to them)."""
    kwargs = {}
    if replica_local:
      kwargs = dict(
          synchronization=tf.VariableSynchronization.ON_READ,
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    shape = param.shape.as_list()
    slots = []
    for suffix in ("/adam_m", "/adam_v"):
      slots.append(tf.get_variable(
          name=param_name + suffix,
          shape=shape,
          dtype=tf.float32,
          trainable=False,
          initializer=tf.zeros_initializer(), **kwargs))
    return tuple(slots)

  def _next_values(self, grad, param, param_name, m, v):
    """The new (param, m, v) as tensors computed from the current values."""
    next_m = tf.multiply(self.beta_1, m) + tf.multiply(1.0 - self.beta_1, grad)
    next_v = (tf.multiply(self.beta_2, v)
              + tf.multiply(1.0 - self.beta_2, tf.square(grad)))
    update = next_m / (tf.sqrt(next_v) + self.epsilon)
    # Decay is added to the step rather than to the loss so that it does not
    # pass through (and get rescaled by) the adaptive moments.
    if self._do_use_weight_decay(param_name):
      update += self.weight_decay_rate * param
    ratio = self._update_ratio(param_name, param, update)
    next_param = param - ratio * self.learning_rate * update
    return next_param, next_m, next_v

  def _update_ratio(self, param_name, param, update):
    del param_name, param, update
    return 1.0

  def _do_use_weight_decay(self, param_name):
    """Whether to use L2 weight decay for `param_name`."""
    if not self.weight_decay_rate:
      return False
    return not _matches_any(self.exclude_from_weight_decay, param_name)

  def _get_variable_name(self, param_name):
    """Get the variable name from the tensor name ("a/b:0" -> "a/b")."""
    match = re.match(r"^(.*):\d+$", param_name)
    if match is not None:
      return match.group(1)
    return param_name


class LAMBOptimizer(DecoupledWeightDecayOptimizer):
  """LAMB (Layer-wise Adaptive Moments optimizer for Batch training)."""

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               exclude_from_layer_adaptation=None,
               name="LAMBOptimizer"):
    super(LAMBOptimizer, self).__init__(
        learning_rate,
        weight_decay_rate=weight_decay_rate,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        exclude_from_weight_decay=exclude_from_weight_decay,
        name=name)
    # As upstream: an empty or missing list falls back to the weight-decay
    # exclusions, so LayerNorm and bias get the plain AdamW step.
    if exclude_from_layer_adaptation:
      self.exclude_from_layer_adaptation = exclude_from_layer_adaptation
    else:
      self.exclude_from_layer_adaptation = exclude_from_weight_decay

  def _update_ratio(self, param_name, param, update):
    """Trust ratio ||w|| / ||update||, or 1 when either norm is zero."""
    if not self._do_layer_adaptation(param_name):
      return 1.0
    w_norm = tf.norm(param, ord=2)
    g_norm = tf.norm(update, ord=2)
    return tf.where(
        tf.greater(w_norm, 0),
        tf.where(tf.greater(g_norm, 0), w_norm / g_norm, 1.0),
        1.0)

  def _do_layer_adaptation(self, param_name):
    """Whether to do layer-wise learning rate adaptation for `param_name`."""
    return not _matches_any(self.exclude_from_layer_adaptation, param_name)
