"""Linear-chain CRF over the labelled words of a window (`--decode=crf`).

The softmax head labels each word on its own; a CRF scores whole label
sequences and learns which label follows which. For a window whose
labelled words (its `label_mask` positions, in order) carry labels
y_1..y_n:

    score(y) = start[y_1] + sum_t unary[t, y_t]
               + sum_{t>1} transitions[y_{t-1}, y_t] + end[y_n]

`unary` are the classifier's logits (bio.ner.model.token_classifier).
Training minimises -log p(y | x) = log Z - score(y), with log Z summed over
all label sequences by the forward algorithm, divided by the number of
labelled words of the batch: the loss is then on the scale of the softmax
head's per-word cross-entropy, so the same learning rates apply.

Variables, in the classifier's scope: `ner/crf_transitions` [L, L] indexed
[previous, current], `ner/crf_start` [L] and `ner/crf_end` [L], all
initialised to zero, where the CRF's loss equals the softmax head's.

A window is its own chain: a sentence cut into windows (bio.ner.features)
is trained as separate chains, and `start`/`end` also score a window's
first and last labelled words. Prediction decodes each whole sentence
(bio.ner.decoding's `crf` decoder: Viterbi over the word log-probabilities
plus these scores, restricted to valid IOB2). Log-probabilities serve as
well as logits there: they differ by a constant per word, which shifts
every sequence's score alike.
"""
import collections

import numpy as np
import tensorflow.compat.v1 as tf

TRANSITIONS = "crf_transitions"
START = "crf_start"
END = "crf_end"
VARIABLE_NAMES = (TRANSITIONS, START, END)

# transitions [L, L] indexed [previous, current], start [L], end [L]: tensors
# in the graph, NumPy arrays when read from a checkpoint.
CrfParams = collections.namedtuple("CrfParams", ["transitions", "start", "end"])


def create_params(num_labels):
  """The CRF's variables in the current variable scope (zero-initialised)."""
  zeros = tf.zeros_initializer()
  return CrfParams(
      tf.get_variable(TRANSITIONS, [num_labels, num_labels], initializer=zeros),
      tf.get_variable(START, [num_labels], initializer=zeros),
      tf.get_variable(END, [num_labels], initializer=zeros))


def compact(values, mask):
  """Moves the positions with `mask` 1 to the front of each row, in order.

  values [B, S, ...], mask [B, S] (0/1) -> (values reordered [B, S, ...],
  lengths [B] int32). Positions from `lengths` on hold the masked-out
  values; callers ignore them.
  """
  mask = tf.cast(mask, tf.int32)
  order = tf.argsort(1 - mask, axis=1, stable=True)
  return (tf.gather(values, order, batch_dims=1),
          tf.reduce_sum(mask, axis=1))


def _live(lengths, max_len):
  """[B, T] bool: position t < lengths[b]."""
  return tf.sequence_mask(lengths, max_len)


def sequence_score(unary, tags, lengths, params):
  """score(y) [B] of the tag sequences tags [B, T] over their lengths."""
  unary = tf.cast(unary, tf.float32)
  max_len = tf.shape(unary)[1]
  live = tf.cast(_live(lengths, max_len), tf.float32)
  picked = tf.gather(unary, tags, batch_dims=2)  # [B, T]
  total = tf.reduce_sum(picked * live, axis=1)
  pairs = tf.gather_nd(params.transitions,
                       tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1))
  total += tf.reduce_sum(pairs * live[:, 1:], axis=1)
  has_words = tf.cast(lengths > 0, tf.float32)
  first = tf.gather(params.start, tags[:, 0])
  last_index = tf.maximum(lengths - 1, 0)
  last = tf.gather(params.end, tf.gather(tags, last_index, batch_dims=1))
  return total + (first + last) * has_words


def log_partition(unary, lengths, params):
  """log Z [B]: log-sum-exp of score(y) over all label sequences (0 for an
  empty row)."""
  unary = tf.cast(unary, tf.float32)
  # One padding step keeps the scan's input non-empty for an empty batch.
  padded = tf.pad(unary, [[0, 0], [0, 1], [0, 0]])
  steps = tf.transpose(padded, [1, 0, 2])  # [T + 1, B, L]
  positions = tf.range(1, tf.shape(steps)[0])

  def forward(alpha, elems):
    row, position = elems
    nxt = tf.reduce_logsumexp(
        alpha[:, :, None] + params.transitions[None], axis=1) + row
    return tf.where_v2((position < lengths)[:, None], nxt, alpha)

  first = steps[0] + params.start[None]
  alphas = tf.scan(forward, (steps[1:], positions), initializer=first)
  final = tf.concat([first[None], alphas], axis=0)[-1]
  log_z = tf.reduce_logsumexp(final + params.end[None], axis=1)
  return tf.where_v2(lengths > 0, log_z, tf.zeros_like(log_z))


def window_loss(logits, label_ids, label_mask, is_real_example, params):
  """(loss, per-window negative log-likelihood [B], labelled words [B]).

  The loss is the summed NLL of the real windows divided by their
  labelled words (at least 1), as the softmax head averages per word.
  """
  unary, lengths = compact(tf.cast(logits, tf.float32), label_mask)
  tags, _ = compact(label_ids, label_mask)
  nll = log_partition(unary, lengths, params) - sequence_score(
      unary, tags, lengths, params)
  real = tf.cast(is_real_example, tf.float32)
  words = tf.cast(lengths, tf.float32) * real
  loss = tf.reduce_sum(nll * real) / tf.maximum(tf.reduce_sum(words), 1.0)
  return loss, nll, words


def load_params(checkpoint, scope):
  """The CRF's NumPy parameters from `checkpoint`, or None when it holds
  none (a model fine-tuned with the softmax loss)."""
  reader = tf.train.load_checkpoint(checkpoint)
  names = ["%s/%s" % (scope, name) for name in VARIABLE_NAMES]
  if not all(reader.has_tensor(name) for name in names):
    return None
  return CrfParams(*[np.asarray(reader.get_tensor(name), dtype=np.float64)
                     for name in names])


def require_params(checkpoint, scope, error_type, advice):
  """`load_params`, raising error_type (one line ending in `advice`) for a
  checkpoint without the CRF: what --decode=crf needs."""
  params = load_params(checkpoint, scope)
  if params is None:
    raise error_type(
        "--decode=crf needs a model fine-tuned with --decode=crf, but %s has "
        "no %s/%s: %s" % (checkpoint, scope, TRANSITIONS, advice))
  return params


def reorder_params(params, columns):
  """NumPy CRF parameters for the labels params' own ids `columns` name, in
  that order (a model whose labels come in another order)."""
  cols = np.asarray(columns)
  return CrfParams(params.transitions[np.ix_(cols, cols)], params.start[cols],
                   params.end[cols])


def mean_params(params):
  """The mean of several CRFs' NumPy parameters (labels in the same order)."""
  return CrfParams(*[np.mean([getattr(p, field) for p in params], axis=0)
                     for field in CrfParams._fields])
