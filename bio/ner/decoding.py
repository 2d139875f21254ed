"""Word labels from the classifier's per-word label probabilities.

Three decoders (run_ner.py --decode, bio.serving.export --decode):

* `argmax`: each word's most probable label, as BioBERT and the paper
  decode. Nothing stops an `I-X` after `O` or after another type; seqeval's
  default (conlleval) mode then reads it as the start of an entity, often a
  false one.
* `viterbi`: the label sequence of highest total log probability among the
  sequences valid in IOB2 (a sentence never starts with `I-X`; `I-X` follows
  only `B-X` or `I-X`). Nothing is learned, unlike a CRF's transition
  scores: the constraint is applied to the softmax outputs at prediction
  time, so training, checkpoints and their variables are unchanged, and a
  model trained either way can be decoded either way.
* `crf`: as `viterbi`, plus the start, transition and end scores a CRF
  head learned (bio.ner.crf). Only a model fine-tuned with
  `run_ner.py --decode=crf` has them; such a model can still be decoded by
  `argmax` or `viterbi` from its per-word probabilities.

On NCBI-disease (2-layer model of README section 9, pretrained 6,000
steps, fine-tuned 2,000) the same checkpoint scored 58.8 test F1 with
`argmax` and 63.0 with `viterbi` (dev 57.7 -> 61.8).

With `crf` the 2-layer hidden-256 model of README section 9 went from 74.8
dev / 74.2 test (`viterbi`, 6,000 fine-tuning steps) to 77.5 / 75.9.

`viterbi` here decodes sentence by sentence in NumPy (run_ner.py's
prediction loop); `viterbi_graph` is its in-graph twin for the SavedModel,
which has no Python at serving time. Tests hold the two to each other and
`viterbi` to a brute-force search over all valid sequences.
"""
import numpy as np

from albert import file_utils
from bio.ner import iob

# Only the Viterbi graph needs TF: tools that merely name decoders start fast.
tf = file_utils.LazyTensorFlow()

DECODERS = ("argmax", "viterbi", "crf")

# Added to the score of a forbidden transition: far below any sum of log
# probabilities (floored at LOG_FLOOR) over a sentence, still finite.
_FORBIDDEN = -1e9
LOG_FLOOR = 1e-30


def check_decoder(name, flag="--decode"):
  """Raises ValueError naming `flag` unless `name` is one of DECODERS."""
  if name not in DECODERS:
    raise ValueError("%s must be one of %s, got %r" %
                     (flag, "|".join(DECODERS), name))


def iob2_constraints(label_list):
  """(start_ok [L] bool, allowed [L, L] bool indexed [previous, current]).

  Labels are IOB2, typed (`B-Disease`) or not (`B`); a label list without
  `I` labels constrains nothing.
  """
  parsed = [iob.parse_label(label) for label in label_list]
  num = len(parsed)
  start_ok = np.ones(num, dtype=bool)
  allowed = np.ones((num, num), dtype=bool)
  for cur, (prefix, etype) in enumerate(parsed):
    if prefix != "I":
      continue
    start_ok[cur] = False
    for prev, (prev_prefix, prev_type) in enumerate(parsed):
      allowed[prev, cur] = prev_prefix in ("B", "I") and prev_type == etype
  return start_ok, allowed


def floored_log(probs):
  """Natural logs of probabilities, floored (a zero stays finite)."""
  return np.log(np.maximum(np.asarray(probs, dtype=np.float64), LOG_FLOOR))


def viterbi(log_probs, start_ok, allowed, crf=None):
  """Label ids [n] of the best valid path through log_probs [n, L], with a
  CRF's learned scores (NumPy bio.ner.crf.CrfParams) added when given."""
  log_probs = np.asarray(log_probs, dtype=np.float64)
  if not len(log_probs):
    return np.zeros([0], dtype=np.int64)
  penalty = np.where(allowed, 0.0, _FORBIDDEN)
  score = np.where(start_ok, log_probs[0], _FORBIDDEN + log_probs[0])
  end = 0.0
  if crf is not None:
    penalty = penalty + crf.transitions
    score = score + crf.start
    end = crf.end
  back = []
  for row in log_probs[1:]:
    candidates = score[:, None] + penalty
    back.append(candidates.argmax(axis=0))
    score = candidates.max(axis=0) + row
  path = [int((score + end).argmax())]
  for pointers in reversed(back):
    path.append(int(pointers[path[-1]]))
  return np.array(path[::-1], dtype=np.int64)


def decode(word_probs, label_list, method="argmax", crf=None):
  """Labels per sentence from each sentence's [words, L] probabilities;
  method "crf" needs the CRF's NumPy parameters `crf`."""
  check_decoder(method)
  if method == "crf" and crf is None:
    raise ValueError("decode=crf needs the parameters of a CRF head")
  if method != "argmax":
    start_ok, allowed = iob2_constraints(label_list)
  out = []
  for probs in word_probs:
    probs = np.asarray(probs).reshape([-1, len(label_list)])
    if method == "argmax":
      ids = probs.argmax(axis=1)
    else:
      ids = viterbi(floored_log(probs), start_ok, allowed,
                    crf if method == "crf" else None)
    out.append([label_list[int(i)] for i in ids])
  return out


def viterbi_graph(probs, lengths, label_list, crf=None):
  """In-graph `viterbi`: probs [B, W, L] float32, lengths [B] -> [B, W] int32.

  Rows are decoded over their first `lengths` words; later positions get
  the label of the row's last word (callers drop them). `crf`: the CRF's
  parameters as tensors (bio.ner.crf.CrfParams), added to the scores.
  """
  start_ok, allowed = iob2_constraints(label_list)
  num_labels = len(label_list)
  log_probs = tf.math.log(tf.maximum(tf.cast(probs, tf.float32), LOG_FLOOR))
  # Two padding positions: the scans then never run over an empty list
  # (which TensorArray cannot stack), even for a batch without words.
  log_probs = tf.pad(log_probs, [[0, 0], [0, 2], [0, 0]])
  penalty = tf.constant(np.where(allowed, 0.0, _FORBIDDEN), tf.float32)
  start = tf.constant(np.where(start_ok, 0.0, _FORBIDDEN), tf.float32)
  end = tf.zeros([num_labels], tf.float32)
  if crf is not None:
    penalty += tf.cast(crf.transitions, tf.float32)
    start += tf.cast(crf.start, tf.float32)
    end = tf.cast(crf.end, tf.float32)
  steps = tf.transpose(log_probs, [1, 0, 2])  # [W + 2, B, L]
  positions = tf.range(1, tf.shape(steps)[0])
  identity = tf.range(num_labels)[None, :]

  def forward(carry, elems):
    score, _ = carry
    row, position = elems
    candidates = score[:, :, None] + penalty[None]
    best = tf.reduce_max(candidates, axis=1) + row
    pointers = tf.argmax(candidates, axis=1, output_type=tf.int32)
    live = (position < lengths)[:, None]
    # Past a row's end the score is carried and each label points to itself.
    return (tf.where_v2(live, best, score),
            tf.where_v2(live, pointers, identity + tf.zeros_like(pointers)))

  first = steps[0] + start[None]
  zero_pointers = tf.zeros_like(first, dtype=tf.int32)
  scores, pointers = tf.scan(forward, (steps[1:], positions),
                             initializer=(first, zero_pointers))
  # Past its end a row's score is carried, so the last one is its final.
  last = tf.argmax(scores[-1] + end[None], axis=1, output_type=tf.int32)

  def backward(label, step_pointers):
    return tf.gather(step_pointers, label, batch_dims=1)

  earlier = tf.scan(backward, pointers, initializer=last, reverse=True)
  path = tf.concat([earlier, last[None]], axis=0)  # [W + 2, B]
  return tf.transpose(path)[:, :-2]
