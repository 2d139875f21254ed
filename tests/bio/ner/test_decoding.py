"""bio.ner.decoding against brute force, IOB2 validity and its graph twin."""
import itertools

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from bio.ner import crf
from bio.ner import decoding
from bio.ner import iob

TYPED = ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
UNTYPED = ["O", "B", "I"]


def _valid(labels):
  """IOB2 validity by the reader's repair pass (independent of
  iob2_constraints): valid labels need no repair."""
  return not iob.normalize_to_iob2(labels)[1]


def _brute_force(probs, label_list, params=None):
  """The valid sequence of highest summed log probability (plus the CRF
  scores `params` when given), by enumeration."""
  best, best_score = None, -np.inf
  for ids in itertools.product(range(len(label_list)), repeat=len(probs)):
    labels = [label_list[i] for i in ids]
    if not _valid(labels):
      continue
    score = sum(np.log(probs[t][i]) for t, i in enumerate(ids))
    if params is not None and ids:
      score += params.start[ids[0]] + params.end[ids[-1]] + sum(
          params.transitions[a, b] for a, b in zip(ids[:-1], ids[1:]))
    if score > best_score:
      best, best_score = labels, score
  return best


def _random_probs(rng, num_words, num_labels, sharpness=3.0):
  logits = rng.normal(size=[num_words, num_labels]) * sharpness
  probs = np.exp(logits)
  return probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("label_list", [TYPED, UNTYPED])
def test_viterbi_equals_brute_force(label_list):
  rng = np.random.RandomState(0)
  for trial in range(60):
    probs = _random_probs(rng, 1 + trial % 5, len(label_list))
    got = decoding.decode([probs], label_list, "viterbi")[0]
    assert got == _brute_force(probs, label_list), trial


def _random_crf(rng, num_labels, scale=2.0):
  return crf.CrfParams(rng.normal(size=[num_labels, num_labels]) * scale,
                       rng.normal(size=[num_labels]) * scale,
                       rng.normal(size=[num_labels]) * scale)


@pytest.mark.parametrize("label_list", [TYPED, UNTYPED])
def test_crf_decode_equals_brute_force(label_list):
  rng = np.random.RandomState(5)
  differs = 0
  for trial in range(40):
    probs = _random_probs(rng, 1 + trial % 5, len(label_list), sharpness=1.0)
    params = _random_crf(rng, len(label_list))
    got = decoding.decode([probs], label_list, "crf", crf=params)[0]
    assert got == _brute_force(probs, label_list, params), trial
    differs += got != decoding.decode([probs], label_list, "viterbi")[0]
  assert differs > 5  # the learned scores do change the paths


def test_crf_decode_needs_the_crf_parameters():
  with pytest.raises(ValueError, match="CRF"):
    decoding.decode([np.ones([2, 3]) / 3], UNTYPED, "crf")


def test_viterbi_repairs_what_argmax_breaks():
  # argmax: O I-Disease I-Disease O, which conlleval reads as an entity.
  probs = np.array([[0.9, 0.05, 0.05],
                    [0.2, 0.35, 0.45],
                    [0.1, 0.1, 0.8],
                    [0.8, 0.1, 0.1]])
  labels = ["O", "B-Disease", "I-Disease"]
  assert decoding.decode([probs], labels, "argmax")[0] == [
      "O", "I-Disease", "I-Disease", "O"]
  # Best valid path: B I (log .35 + log .8) beats O O (log .2 + log .1).
  assert decoding.decode([probs], labels, "viterbi")[0] == [
      "O", "B-Disease", "I-Disease", "O"]


def test_viterbi_output_is_always_valid_iob2():
  rng = np.random.RandomState(1)
  sentences = [_random_probs(rng, n, len(TYPED), sharpness=1.0)
               for n in rng.randint(0, 40, size=50)]
  argmax = decoding.decode(sentences, TYPED, "argmax")
  decoded = decoding.decode(sentences, TYPED, "viterbi")
  assert [len(s) for s in decoded] == [len(s) for s in sentences]
  assert all(_valid(labels) for labels in decoded)
  # The random inputs do produce invalid argmax output, so the check bites.
  assert not all(_valid(labels) for labels in argmax)


def test_argmax_decodes_each_word_alone():
  rng = np.random.RandomState(2)
  probs = _random_probs(rng, 7, len(TYPED))
  assert decoding.decode([probs], TYPED, "argmax")[0] == [
      TYPED[i] for i in probs.argmax(axis=1)]


def test_unknown_decoder_is_refused():
  with pytest.raises(ValueError, match="argmax|viterbi"):
    decoding.decode([np.ones([1, 3]) / 3], UNTYPED, "beam")


@pytest.mark.parametrize("label_list,with_crf", [
    (TYPED, False), (UNTYPED, False), (TYPED, True)])
def test_graph_viterbi_equals_numpy(label_list, with_crf):
  rng = np.random.RandomState(3)
  params = _random_crf(rng, len(label_list)) if with_crf else None
  lengths = [0, 1, 2, 5, 17, 30, 9]
  width = max(lengths)
  sentences = [_random_probs(rng, n, len(label_list), sharpness=1.5)
               for n in lengths]
  dense = np.zeros([len(lengths), width, len(label_list)], np.float32)
  for row, probs in enumerate(sentences):
    dense[row, :len(probs)] = probs
  with tf.Graph().as_default():
    probs_in = tf.placeholder(tf.float32, [None, None, len(label_list)])
    lengths_in = tf.placeholder(tf.int32, [None])
    graph_params = None
    if with_crf:
      graph_params = crf.CrfParams(*[tf.constant(p, tf.float32)
                                     for p in params])
    path = decoding.viterbi_graph(probs_in, lengths_in, label_list,
                                  graph_params)
    with tf.Session() as session:
      got = session.run(path, {probs_in: dense, lengths_in: lengths})
      empty = session.run(path, {
          probs_in: np.zeros([0, 0, len(label_list)]), lengths_in: []})
  expected = decoding.decode(
      [p.astype(np.float32) for p in sentences], label_list,
      "crf" if with_crf else "viterbi", crf=params)
  for row, labels in enumerate(expected):
    assert [label_list[i] for i in got[row, :lengths[row]]] == labels, row
  assert empty.shape == (0, 0)
