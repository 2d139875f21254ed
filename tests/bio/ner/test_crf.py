"""bio.ner.crf against enumeration of every label sequence in NumPy."""
import itertools

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from bio.ner import crf
from bio.ner import model as ner_model

NUM_LABELS = 3


def _np_score(unary, tags, params):
  """score(y) of one sequence, written out from the formula."""
  transitions, start, end = params
  if not len(tags):
    return 0.0
  total = start[tags[0]] + end[tags[-1]]
  total += sum(unary[t, y] for t, y in enumerate(tags))
  total += sum(transitions[a, b] for a, b in zip(tags[:-1], tags[1:]))
  return total


def _np_log_z(unary, params):
  n = len(unary)
  if not n:
    return 0.0
  scores = [_np_score(unary, tags, params)
            for tags in itertools.product(range(unary.shape[1]), repeat=n)]
  return np.logaddexp.reduce(scores)


def _np_marginals(unary, params):
  """p(y_t = l) [n, L] by enumeration."""
  n, num = unary.shape
  log_z = _np_log_z(unary, params)
  out = np.zeros([n, num])
  for tags in itertools.product(range(num), repeat=n):
    p = np.exp(_np_score(unary, tags, params) - log_z)
    for t, y in enumerate(tags):
      out[t, y] += p
  return out


def _random_params(rng, scale=1.0):
  return crf.CrfParams(rng.normal(size=[NUM_LABELS, NUM_LABELS]) * scale,
                       rng.normal(size=[NUM_LABELS]) * scale,
                       rng.normal(size=[NUM_LABELS]) * scale)


def _graph_params(params):
  return crf.CrfParams(*[tf.constant(p, tf.float32) for p in params])


def test_log_partition_score_and_marginals_equal_enumeration():
  rng = np.random.RandomState(0)
  lengths = [0, 1, 2, 4, 5, 3]
  width = 6
  unary = rng.normal(size=[len(lengths), width, NUM_LABELS]) * 2
  tags = rng.randint(0, NUM_LABELS, size=[len(lengths), width])
  params = _random_params(rng)
  with tf.Graph().as_default():
    unary_in = tf.constant(unary, tf.float32)
    graph_params = _graph_params(params)
    log_z = crf.log_partition(unary_in, tf.constant(lengths), graph_params)
    score = crf.sequence_score(unary_in, tf.constant(tags),
                               tf.constant(lengths), graph_params)
    # d log Z / d unary is the marginal of each label at each position.
    marginals = tf.gradients(log_z, unary_in)[0]
    with tf.Session() as sess:
      got_z, got_score, got_marginals = sess.run([log_z, score, marginals])
  for row, n in enumerate(lengths):
    # Positions past n hold garbage: it must not count.
    assert got_z[row] == pytest.approx(_np_log_z(unary[row, :n], params),
                                       abs=1e-4)
    assert got_score[row] == pytest.approx(
        _np_score(unary[row, :n], tags[row, :n], params), abs=1e-4)
    np.testing.assert_allclose(got_marginals[row, :n],
                               _np_marginals(unary[row, :n], params),
                               atol=1e-5)
    np.testing.assert_array_equal(got_marginals[row, n:], 0.0)


def test_compact_moves_masked_positions_to_the_front_in_order():
  rng = np.random.RandomState(1)
  mask = (rng.rand(5, 9) < 0.4).astype(np.int32)
  mask[0] = 0
  values = rng.normal(size=[5, 9, 2])
  with tf.Graph().as_default():
    packed, lengths = crf.compact(tf.constant(values), tf.constant(mask))
    with tf.Session() as sess:
      got, got_lengths = sess.run([packed, lengths])
  for row in range(5):
    picked = values[row][mask[row] == 1]
    assert got_lengths[row] == len(picked)
    np.testing.assert_array_equal(got[row, :len(picked)], picked)


def test_zero_crf_scores_give_the_softmax_loss():
  """With zero CRF scores the window loss is the per-word cross-entropy of
  the labelled positions of real windows."""
  rng = np.random.RandomState(2)
  batch, seq = 4, 7
  logits = rng.normal(size=[batch, seq, NUM_LABELS])
  mask = (rng.rand(batch, seq) < 0.7).astype(np.int32)
  labels = rng.randint(0, NUM_LABELS, size=[batch, seq])
  real = np.array([1, 1, 0, 1])
  with tf.Graph().as_default():
    with tf.variable_scope("ner"):
      params = crf.create_params(NUM_LABELS)
    logits_in = tf.constant(logits, tf.float32)
    loss, nll, words = crf.window_loss(logits_in, tf.constant(labels),
                                       tf.constant(mask), tf.constant(real),
                                       params)
    softmax_loss, _ = ner_model.masked_token_loss(
        logits_in, tf.constant(labels),
        ner_model.token_weights(tf.constant(mask), tf.constant(real)))
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      got, want, got_words = sess.run([loss, softmax_loss, words])
  assert got == pytest.approx(want, rel=1e-5)
  np.testing.assert_array_equal(got_words, mask.sum(axis=1) * real)
  assert [p.op.name for p in params] == [
      "ner/crf_transitions", "ner/crf_start", "ner/crf_end"]


def test_training_learns_the_transitions_the_data_has():
  # Labels O=0, B=1, I=2; gold sequences always put I after B, never after O,
  # and the unary scores cannot tell B from I.
  gold = np.array([[0, 1, 2, 2, 0, 1, 2, 0]] * 8)
  mask = np.ones_like(gold)
  with tf.Graph().as_default():
    with tf.variable_scope("ner"):
      params = crf.create_params(NUM_LABELS)
    logits = tf.zeros([8, 8, NUM_LABELS])
    loss, _, _ = crf.window_loss(logits, tf.constant(gold), tf.constant(mask),
                                 tf.ones([8], tf.int32), params)
    train = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      first = sess.run(loss)
      for _ in range(50):
        sess.run(train)
      last, transitions = sess.run([loss, params.transitions])
  assert last < first / 2
  assert transitions[1, 2] > transitions[0, 2]  # B->I over O->I
  assert transitions[2, 0] > transitions[2, 1]  # I->O over I->B


def test_load_params_reads_a_checkpoint_or_says_none(tmp_path):
  values = _random_params(np.random.RandomState(4))
  with tf.Graph().as_default():
    with tf.variable_scope("ner"):
      params = crf.create_params(NUM_LABELS)
    other = tf.get_variable("bert/x", [2])
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      for var, value in zip(params, values):
        sess.run(var.assign(value))
      with_crf = tf.train.Saver().save(sess, str(tmp_path / "crf" / "m"))
      without = tf.train.Saver([other]).save(sess, str(tmp_path / "no" / "m"))
  loaded = crf.load_params(with_crf, "ner")
  for got, want in zip(loaded, values):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert crf.load_params(without, "ner") is None


def test_reordered_params_score_the_same_paths():
  rng = np.random.RandomState(1)
  params = crf.CrfParams(rng.normal(size=(4, 4)), rng.normal(size=4),
                         rng.normal(size=4))
  order = [2, 0, 3, 1]  # new label i is the old label order[i]
  moved = crf.reorder_params(params, order)

  def score(p, path):
    return (p.start[path[0]] + p.end[path[-1]] +
            sum(p.transitions[a, b] for a, b in zip(path, path[1:])))

  for path in itertools.product(range(4), repeat=3):
    old = [order[i] for i in path]
    assert score(moved, path) == pytest.approx(score(params, old))
