"""AdamW / LAMB updates, the learning-rate schedule and create_optimizer.

Every expected value comes from NumPy code written here from the formulas
(Adam without bias correction, decoupled decay, LAMB trust ratio, linear
warmup, polynomial decay, global-norm clipping), not from the code under test.
"""
import logging as std_logging

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import lamb_optimizer
from albert import optimization

BETA_1, BETA_2, EPS = 0.9, 0.999, 1e-6
DEFAULT_EXCLUDE = ["LayerNorm", "layer_norm", "bias"]


# ---------------------------------------------------------------- references
def np_step(param, m, v, grad, lr, wd, decay, adapt):
  """One AdamW (adapt=False) or LAMB (adapt=True) step in float64."""
  m = BETA_1 * m + (1.0 - BETA_1) * grad
  v = BETA_2 * v + (1.0 - BETA_2) * grad * grad
  update = m / (np.sqrt(v) + EPS)
  if decay:
    update = update + wd * param
  ratio = 1.0
  if adapt:
    w_norm = np.linalg.norm(param.ravel())
    g_norm = np.linalg.norm(update.ravel())
    if w_norm > 0 and g_norm > 0:
      ratio = w_norm / g_norm
  return param - ratio * lr * update, m, v


def np_lr(step, init_lr, num_train, num_warmup, power=1.0, start=0):
  if num_warmup and step - start < num_warmup:
    return init_lr * (step - start) / num_warmup
  return init_lr * (1.0 - min(step, num_train) / num_train) ** power


def np_clip(grads, clip_norm=1.0):
  norm = np.sqrt(sum(np.sum(g * g) for g in grads))
  return [g * clip_norm / max(norm, clip_norm) for g in grads]


# ------------------------------------------------------- quadratic problem
# loss = sum_i sum(C_i * w_i + 0.5 * D_i * w_i^2), so grad_i = C_i + D_i * w_i.
# Each entry: name, initial value, C, D. "zero" starts at w = 0 (LAMB's
# w_norm == 0 case); "frozen" has no gradient at all (g_norm == 0 case when
# it is also excluded from decay).
def _problem(big_grad=False):
  rng = np.random.RandomState(7)
  def r(*shape):
    return rng.uniform(-1.0, 1.0, size=shape)
  specs = [
      ("enc/dense/kernel", r(3, 4), r(3, 4), rng.uniform(0.5, 2, (3, 4))),
      ("enc/dense/bias", r(4), r(4), rng.uniform(0.5, 2, 4)),
      ("enc/LayerNorm/gamma", r(4), r(4), rng.uniform(0.5, 2, 4)),
      ("enc/layer_norm/beta", r(3), r(3), rng.uniform(0.5, 2, 3)),
      ("enc/zero/kernel", np.zeros((2, 3)), r(2, 3), rng.uniform(0.5, 2,
                                                                 (2, 3))),
      ("enc/frozen/kernel", r(3), np.zeros(3), np.zeros(3)),
  ]
  if big_grad:
    # Dominates the global norm, so clipping shrinks every other gradient
    # below epsilon: the result then differs grossly from an unclipped run.
    specs.append(("enc/big/kernel", r(5), 1e5 * np.ones(5), np.ones(5)))
  return specs


def _build_quadratic(specs):
  variables, loss = [], 0.0
  for name, init, c, d in specs:
    var = tf.get_variable(name, initializer=init.astype(np.float32))
    variables.append(var)
    loss += tf.reduce_sum(tf.constant(c, tf.float32) * var
                          + 0.5 * tf.constant(d, tf.float32) * var * var)
  return variables, loss


def _np_quadratic_run(specs, steps, flags, lr_fn, wd, clip):
  params = {n: init.astype(np.float32).astype(np.float64)
            for n, init, _, _ in specs}
  ms = {n: np.zeros_like(p) for n, p in params.items()}
  vs = {n: np.zeros_like(p) for n, p in params.items()}
  names = [s[0] for s in specs]
  for step in range(steps):
    grads = [c + d * params[n] for n, _, c, d in specs]
    if clip:
      grads = np_clip(grads)
    for name, grad in zip(names, grads):
      decay, adapt = flags[name]
      params[name], ms[name], vs[name] = np_step(
          params[name], ms[name], vs[name], grad, lr_fn(step), wd, decay,
          adapt)
  return params, ms, vs


def _run_tf(train_op, fetches, steps):
  with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for _ in range(steps):
      sess.run(train_op)
    return sess.run(fetches)


def _slot_values(names):
  by_name = {v.op.name: v for v in tf.global_variables()}
  return {n: (by_name[n + "/adam_m"], by_name[n + "/adam_v"]) for n in names}


# Independent statement of which variables decay / adapt under each config.
ADAMW_FLAGS = {
    "enc/dense/kernel": (True, False),
    "enc/dense/bias": (False, False),
    "enc/LayerNorm/gamma": (False, False),
    "enc/layer_norm/beta": (False, False),
    "enc/zero/kernel": (True, False),
    "enc/frozen/kernel": (True, False),
    "enc/big/kernel": (True, False),
}
LAMB_DEFAULT_FLAGS = {
    "enc/dense/kernel": (True, True),
    "enc/dense/bias": (False, False),
    "enc/LayerNorm/gamma": (False, False),
    "enc/layer_norm/beta": (False, False),
    "enc/zero/kernel": (True, True),
    "enc/frozen/kernel": (True, True),
    "enc/big/kernel": (True, True),
}
# "frozen" excluded from decay but still adapted: its update is exactly 0.
LAMB_CUSTOM_FLAGS = dict(LAMB_DEFAULT_FLAGS)
LAMB_CUSTOM_FLAGS["enc/frozen/kernel"] = (False, True)

OPTIMIZER_CASES = {
    "adamw": (lambda lr, wd: optimization.AdamWeightDecayOptimizer(
        learning_rate=lr, weight_decay_rate=wd,
        exclude_from_weight_decay=DEFAULT_EXCLUDE), ADAMW_FLAGS),
    "lamb_default": (lambda lr, wd: lamb_optimizer.LAMBOptimizer(
        learning_rate=lr, weight_decay_rate=wd,
        exclude_from_weight_decay=DEFAULT_EXCLUDE), LAMB_DEFAULT_FLAGS),
    "lamb_custom": (lambda lr, wd: lamb_optimizer.LAMBOptimizer(
        learning_rate=lr, weight_decay_rate=wd,
        exclude_from_weight_decay=DEFAULT_EXCLUDE + ["frozen"],
        exclude_from_layer_adaptation=DEFAULT_EXCLUDE), LAMB_CUSTOM_FLAGS),
}


# --------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_optimizer_steps_match_numpy(case):
  make_opt, flags = OPTIMIZER_CASES[case]
  lr, wd, steps = 0.05, 0.1, 4
  specs = _problem()
  names = [s[0] for s in specs]
  with tf.Graph().as_default():
    variables, loss = _build_quadratic(specs)
    grads = tf.gradients(loss, variables)
    train_op = make_opt(lr, wd).apply_gradients(list(zip(grads, variables)))
    slots = _slot_values(names)
    got_params, got_slots = _run_tf(train_op, (variables, slots), steps)

  want_params, want_m, want_v = _np_quadratic_run(
      specs, steps, flags, lambda _: lr, wd, clip=False)
  for name, got in zip(names, got_params):
    np.testing.assert_allclose(got, want_params[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)
    np.testing.assert_allclose(got_slots[name][0], want_m[name], rtol=1e-5,
                               atol=1e-7, err_msg=name + "/adam_m")
    np.testing.assert_allclose(got_slots[name][1], want_v[name], rtol=1e-5,
                               atol=1e-9, err_msg=name + "/adam_v")
  init = {n: i for n, i, _, _ in specs}
  if flags["enc/frozen/kernel"] == (False, True):
    # g_norm == 0: ratio 1 and a zero step, not inf * 0 = NaN.
    np.testing.assert_array_equal(got_params[names.index("enc/frozen/kernel")],
                                  init["enc/frozen/kernel"].astype(np.float32))


def test_lamb_trust_ratio_is_what_separates_it_from_adamw():
  # Guards the reference itself: with the same decay flags, LAMB and AdamW
  # must disagree on adapted variables and agree on excluded ones.
  specs = _problem()
  lamb = _np_quadratic_run(specs, 3, LAMB_DEFAULT_FLAGS, lambda _: 0.05, 0.1,
                           False)[0]
  adamw = _np_quadratic_run(specs, 3, ADAMW_FLAGS, lambda _: 0.05, 0.1,
                            False)[0]
  kernel = "enc/dense/kernel"
  assert np.abs(lamb[kernel] - adamw[kernel]).max() > 1e-3
  np.testing.assert_array_equal(lamb["enc/dense/bias"], adamw["enc/dense/bias"])


@pytest.mark.parametrize("opt_name", ["adamw", "lamb"])
def test_slot_variables_are_checkpointed_under_upstream_names(opt_name,
                                                              tmp_path):
  with tf.Graph().as_default():
    variables, loss = _build_quadratic(_problem()[:2])
    train_op = optimization.create_optimizer(loss, 0.1, 10, 2, False,
                                             optimizer=opt_name)
    trainable = {v.op.name for v in tf.trainable_variables()}
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(train_op)
      path = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
  saved = dict(tf.train.list_variables(path))
  for var in variables:
    name = var.op.name
    for slot in ("adam_m", "adam_v"):
      assert saved[name + "/" + slot] == var.shape.as_list()
      assert name + "/" + slot not in trainable
  assert saved["global_step"] == []
  assert trainable == {"enc/dense/kernel", "enc/dense/bias"}


@pytest.mark.parametrize("init_lr,num_train,num_warmup,power,start", [
    (0.1, 100, 10, 1.0, 0),
    (2e-3, 100, 10, 2.0, 30),
    (0.5, 40, 0, 1.0, 0),
])
def test_learning_rate_schedule_closed_form(init_lr, num_train, num_warmup,
                                            power, start):
  steps = [start + k for k in (0, 1, 4, 9, 10, 11)] + [50, 99, 100, 180]
  steps = sorted(s for s in set(steps) if s >= start)
  with tf.Graph().as_default():
    step_ph = tf.placeholder(tf.int64, [])
    lr = optimization.learning_rate_schedule(
        init_lr, num_train, num_warmup, step_ph, poly_power=power,
        start_warmup_step=start)
    with tf.Session() as sess:
      got = [sess.run(lr, {step_ph: s}) for s in steps]
  want = [np_lr(s, init_lr, num_train, num_warmup, power, start)
          for s in steps]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
  # Spot checks written out by hand.
  if (num_warmup, start) == (10, 0):
    np.testing.assert_allclose(got[steps.index(4)], 0.1 * 4 / 10, rtol=1e-6)
    np.testing.assert_allclose(got[steps.index(50)], 0.1 * 0.5, rtol=1e-6)
  if start == 30:
    np.testing.assert_allclose(got[steps.index(34)], 2e-3 * 0.4, rtol=1e-6)
    np.testing.assert_allclose(got[steps.index(40)], 2e-3 * 0.6 ** 2,
                               rtol=1e-6)
  assert got[-1] == 0.0


@pytest.mark.parametrize("opt_name", ["adamw", "lamb"])
def test_create_optimizer_matches_numpy_with_schedule_and_clipping(opt_name):
  init_lr, num_train, num_warmup, start, steps = 0.1, 12, 4, 1, 7
  specs = _problem(big_grad=True)
  flags = ADAMW_FLAGS if opt_name == "adamw" else LAMB_DEFAULT_FLAGS
  with tf.Graph().as_default():
    variables, loss = _build_quadratic(specs)
    train_op = optimization.create_optimizer(
        loss, init_lr, num_train, num_warmup, False, optimizer=opt_name,
        start_warmup_step=start)
    global_step = tf.train.get_global_step()
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(global_step.assign(start))
      for _ in range(steps):
        sess.run(train_op)
      got, got_step = sess.run((variables, global_step))
  assert got_step == start + steps

  def lr_fn(k):
    return np_lr(start + k, init_lr, num_train, num_warmup, 1.0, start)
  want = _np_quadratic_run(specs, steps, flags, lr_fn, 0.01, clip=True)[0]
  unclipped = _np_quadratic_run(specs, steps, flags, lr_fn, 0.01, clip=False)[0]
  # The first step has learning rate 0, so parameters move only from step 2 on.
  assert lr_fn(0) == 0.0
  for name, value in zip([s[0] for s in specs], got):
    np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)
  # Clipping really matters on this problem (else the check above is void).
  bias = "enc/dense/bias"
  assert np.abs(unclipped[bias] - want[bias]).max() > 1e-2


@pytest.mark.parametrize("use_resource", [False, True])
def test_learning_rate_reads_global_step_before_increment(use_resource):
  # Warmup from step 0 makes the first step's learning rate exactly 0, so the
  # parameter must not move on run 1. Upstream groups the increment with the
  # update unordered; with reference variables the rate then saw step 1 in
  # 7 of 10 graphs, so six fresh graphs make a missed regression unlikely.
  for _ in range(6):
    with tf.Graph().as_default():
      with tf.variable_scope(tf.get_variable_scope(),
                             use_resource=use_resource):
        w = tf.get_variable("w", initializer=np.zeros(3, np.float32))
        train_op = optimization.create_optimizer(
            tf.reduce_sum(w * tf.constant([1.0, -2.0, 3.0])), 1.0, 100, 10,
            False)
        step = tf.train.get_global_step()
        with tf.Session() as sess:
          sess.run(tf.global_variables_initializer())
          sess.run(train_op)
          after_one = sess.run((w, step))
          sess.run(train_op)
          after_two = sess.run((w, step))
    np.testing.assert_array_equal(after_one[0], np.zeros(3, np.float32))
    assert (after_one[1], after_two[1]) == (1, 2)
    # Step 1 uses lr 0.1; clipped grad g = c/|c|, Adam step is 0.1*m/sqrt(v).
    g = np.array([1.0, -2.0, 3.0]) / np.sqrt(14.0)
    m = 0.9 * 0.1 * g + 0.1 * g
    v = 0.999 * 0.001 * g * g + 0.001 * g * g
    np.testing.assert_allclose(after_two[0], -0.1 * m / (np.sqrt(v) + EPS),
                               rtol=1e-5)


def test_excluded_tvars_are_not_trained(caplog):
  specs = _problem()[:3]
  with tf.Graph().as_default():
    variables, loss = _build_quadratic(specs)
    with caplog.at_level(std_logging.WARNING):
      train_op = optimization.create_optimizer(
          loss, 0.1, 10, 0, False, optimizer="lamb",
          excluded_tvars=["enc/dense/bias:0", "enc/LayerNorm/gamma",
                          "no/such/var"])
    names = {v.op.name for v in tf.global_variables()}
    got = _run_tf(train_op, variables, 3)
  assert "enc/dense/bias/adam_m" not in names
  assert "enc/LayerNorm/gamma/adam_v" not in names
  assert "enc/dense/kernel/adam_m" in names
  init = {n: i.astype(np.float32) for n, i, _, _ in specs}
  np.testing.assert_array_equal(got[1], init["enc/dense/bias"])
  np.testing.assert_array_equal(got[2], init["enc/LayerNorm/gamma"])
  assert np.abs(got[0] - init["enc/dense/kernel"]).max() > 1e-3
  assert "no/such/var" in caplog.text


@pytest.mark.parametrize("opt_name", ["adamw", "lamb"])
def test_embedding_gradient_as_indexed_slices(opt_name):
  # tf.gather yields IndexedSlices (ALBERT on CPU/GPU); repeated ids must sum.
  rng = np.random.RandomState(5)
  table0 = rng.uniform(-1, 1, (5, 3)).astype(np.float32)
  ids = np.array([0, 2, 2, 4])
  coef = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
  with tf.Graph().as_default():
    table = tf.get_variable("word_embeddings", initializer=table0)
    loss = tf.reduce_sum(tf.constant(coef) * tf.gather(table, ids))
    (grad,) = tf.gradients(loss, [table])
    assert isinstance(grad, tf.IndexedSlices)
    opt_class = (optimization.AdamWeightDecayOptimizer if opt_name == "adamw"
                 else lamb_optimizer.LAMBOptimizer)
    train_op = opt_class(0.1, weight_decay_rate=0.01).apply_gradients(
        [(grad, table)])
    got = _run_tf(train_op, table, 2)
  dense = np.zeros((5, 3))
  np.add.at(dense, ids, coef)
  param = table0.astype(np.float64)
  m, v = np.zeros_like(param), np.zeros_like(param)
  for _ in range(2):
    param, m, v = np_step(param, m, v, dense, 0.1, 0.01, True,
                          opt_name == "lamb")
  np.testing.assert_allclose(got, param, rtol=1e-5, atol=1e-6)


class _RecordingCrossShard(tf.tpu.CrossShardOptimizer):
  built = []

  def __init__(self, opt, *args, **kwargs):
    super().__init__(opt, *args, **kwargs)
    _RecordingCrossShard.built.append(opt)


@pytest.mark.parametrize("use_tpu", [False, True])
def test_use_tpu_wraps_in_cross_shard_optimizer(use_tpu, monkeypatch):
  _RecordingCrossShard.built = []
  monkeypatch.setattr(tf.tpu, "CrossShardOptimizer", _RecordingCrossShard)
  with tf.Graph().as_default() as graph:
    _, loss = _build_quadratic(_problem()[:3])
    optimization.create_optimizer(loss, 0.1, 10, 2, use_tpu,
                                  optimizer="lamb")
    sums = [op for op in graph.get_operations()
            if op.type == "CrossReplicaSum"]
  if use_tpu:
    assert len(_RecordingCrossShard.built) == 1
    assert isinstance(_RecordingCrossShard.built[0],
                      lamb_optimizer.LAMBOptimizer)
    assert len(sums) == 3  # one per trainable variable's gradient
  else:
    assert not _RecordingCrossShard.built
    assert not sums


def test_bad_arguments_raise():
  with tf.Graph().as_default():
    w = tf.get_variable("w", initializer=np.ones(2, np.float32))
    loss = tf.reduce_sum(w)
    with pytest.raises(ValueError, match="sgd"):
      optimization.create_optimizer(loss, 0.1, 10, 1, False, optimizer="sgd")
    with pytest.raises(ValueError, match="num_train_steps"):
      optimization.create_optimizer(loss, 0.1, 0, 0, False)


# --------------------------------------------------- read-before-write check
# A tanh MLP couples all variables: each gradient reads every weight, so an
# assign that runs before another variable's gradient is computed changes it.
MLP_LAYERS, MLP_WIDTH, MLP_BATCH, MLP_STEPS, MLP_LR = 8, 48, 16, 3, 0.01
# Keeps every gradient entry far above epsilon, where Adam's step no longer
# amplifies float32 rounding, so float64 NumPy is a tight reference.
MLP_LOSS_SCALE = 100.0


def _mlp_data():
  rng = np.random.RandomState(3)
  weights = [(rng.randn(MLP_WIDTH, MLP_WIDTH) * 0.3).astype(np.float32)
             for _ in range(MLP_LAYERS)]
  x = rng.randn(MLP_BATCH, MLP_WIDTH).astype(np.float32)
  target = rng.uniform(-0.5, 0.5, (MLP_BATCH, MLP_WIDTH)).astype(np.float32)
  return weights, x, target


def _np_mlp_grads(weights, x, target):
  hs = [x.astype(np.float64)]
  for w in weights:
    hs.append(np.tanh(hs[-1] @ w))
  dh = 2.0 * MLP_LOSS_SCALE * (hs[-1] - target)
  grads = [None] * len(weights)
  for k in reversed(range(len(weights))):
    dz = dh * (1.0 - hs[k + 1] ** 2)
    grads[k] = hs[k].T @ dz
    dh = dz @ weights[k].T
  return grads


def _np_mlp_run(opt_name):
  weights, x, target = _mlp_data()
  params = [w.astype(np.float64) for w in weights]
  ms = [np.zeros_like(p) for p in params]
  vs = [np.zeros_like(p) for p in params]
  for _ in range(MLP_STEPS):
    grads = _np_mlp_grads(params, x, target)
    for k in range(len(params)):
      params[k], ms[k], vs[k] = np_step(params[k], ms[k], vs[k], grads[k],
                                        MLP_LR, 0.01, True,
                                        opt_name == "lamb")
  return params


def _tf_mlp_run(opt_name, use_resource):
  weights, x, target = _mlp_data()
  with tf.Graph().as_default():
    with tf.variable_scope(tf.get_variable_scope(), use_resource=use_resource):
      variables = [tf.get_variable("layer_%d/kernel" % k, initializer=w)
                   for k, w in enumerate(weights)]
      h = tf.constant(x)
      for var in variables:
        h = tf.tanh(tf.matmul(h, var))
      loss = MLP_LOSS_SCALE * tf.reduce_sum(tf.square(h - tf.constant(target)))
      grads = tf.gradients(loss, variables)
      if opt_name == "lamb":
        opt = lamb_optimizer.LAMBOptimizer(MLP_LR, weight_decay_rate=0.01)
      else:
        opt = optimization.AdamWeightDecayOptimizer(MLP_LR,
                                                    weight_decay_rate=0.01)
      train_op = opt.apply_gradients(list(zip(grads, variables)))
    return _run_tf(train_op, variables, MLP_STEPS)


@pytest.mark.parametrize("opt_name,use_resource", [
    ("lamb", False), ("adamw", False), ("lamb", True)])
def test_each_step_reads_before_it_writes(opt_name, use_resource):
  # Reference variables (tf.disable_v2_behavior) are where upstream's
  # unordered assigns raced: with them this problem ends 1.5e-2 (LAMB) and
  # 2.4e-1 (AdamW) away from NumPy in every run, while the ordered update
  # stays within 2e-6 (LAMB) and 7e-5 (AdamW: float32 rounding where g2
  # nearly cancels g1 in m).
  want = _np_mlp_run(opt_name)
  first = None
  for _ in range(3):
    got = _tf_mlp_run(opt_name, use_resource)
    for k, value in enumerate(got):
      np.testing.assert_allclose(value, want[k], rtol=0, atol=2e-4,
                                 err_msg="layer_%d" % k)
    if first is None:
      first = got
    else:
      for a, b in zip(first, got):
        np.testing.assert_array_equal(a, b)
