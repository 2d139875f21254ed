"""Labelled sentences -> fixed-length ALBERT features for token classification.

Alignment: every word is tokenized on its own (SentencePiece, after
`preprocess_text` as ALBERT's classifiers do); its FIRST piece carries the
word's label, its other pieces, [CLS], [SEP] and padding carry neither loss
nor prediction (`label_mask` 0).

Windows: nothing is truncated. A sentence whose pieces do not fit in
`max_seq_length - 2` is cut into overlapping windows of that many pieces,
starting every `stride` pieces (default half a window; the last window is
aligned with the end of the sentence). Each word is predicted, and trained
on, in exactly ONE window: the window where its first piece has the most
context, i.e. the largest min(pieces to its left, pieces to its right), as
BERT does for SQuAD spans (ties go to the earlier window). Other windows
see the word as context only. A word longer than a window simply spans
several windows; its first piece still carries the prediction.

`InputFeatures.word_ids` records, per position, the index of the word it
predicts (-1 elsewhere) and `sentence_index` the sentence, so predictions
are put back in the original order by `assemble_predictions`.

Features go to TFRecord files with upstream's keys plus `label_mask`:
input_ids, input_mask, segment_ids, label_ids, label_mask, is_real_example.
Padding examples (is_real_example=0) fill the last batch so that TPU batch
shapes stay fixed; they are excluded from loss and metrics.

Length-aware batching (CPU/GPU; TPU keeps fixed [batch, max_seq_length]):
records stay padded to max_seq_length on disk, and the input_fn cuts the
padding off again. Training (`bucket_boundaries`) groups windows of similar
length into batches (`tf.data.Dataset.bucket_by_sequence_length`) padded
to their longest window; evaluation and prediction (`trim_to_batch`) pad
each batch to its longest window, and `length_order` sorts windows longest
first so that a batch holds similar lengths. Padding positions carry no
label, no attention and no loss, so losses and predictions are those of
fixed padding (up to float rounding).
"""
import collections
import time

from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from albert import file_utils
from albert import tokenization

FEATURE_KEYS = ("input_ids", "input_mask", "segment_ids", "label_ids",
                "label_mask", "is_real_example")


class InputFeatures(object):
  """One window of one sentence, plus the bookkeeping to put it back."""

  def __init__(self, input_ids, input_mask, segment_ids, label_ids, label_mask,
               is_real_example, sentence_index, word_ids):
    self.input_ids = input_ids
    self.input_mask = input_mask
    self.segment_ids = segment_ids
    self.label_ids = label_ids
    self.label_mask = label_mask
    self.is_real_example = is_real_example
    self.sentence_index = sentence_index
    self.word_ids = word_ids

  def as_dict(self):
    return {key: getattr(self, key) for key in FEATURE_KEYS}


class PieceEncoder(object):
  """Word -> piece ids with the tokenizer, cached (corpora repeat words)."""

  def __init__(self, tokenizer, do_lower_case=True):
    self.tokenizer = tokenizer
    self.do_lower_case = do_lower_case
    self._cache = {}
    if tokenizer.sp_model is not None:
      sp = tokenizer.sp_model
      self.unk_piece = sp.IdToPiece(sp.unk_id())
      self._spm = True
    else:
      self.unk_piece = "[UNK]"
      self._spm = False
    self.cls_id, self.sep_id = tokenizer.convert_tokens_to_ids(
        ["[CLS]", "[SEP]"])

  def pieces(self, word):
    """The pieces of one word (never empty: falls back to the unknown piece)."""
    if self._spm:
      text = tokenization.preprocess_text(word, lower=self.do_lower_case)
    else:
      text = word
    pieces = self.tokenizer.tokenize(text)
    # A word made only of characters the tokenizer drops (e.g. a zero-width
    # space) still needs a position to carry its label.
    return pieces or [self.unk_piece]

  def ids(self, word):
    cached = self._cache.get(word)
    if cached is None:
      cached = self.tokenizer.convert_tokens_to_ids(self.pieces(word))
      self._cache[word] = cached
    return cached


def window_spans(num_pieces, window_len, stride=None):
  """[start, end) piece spans covering `num_pieces` pieces."""
  if window_len < 1:
    raise ValueError("window length must be >= 1, got %d" % window_len)
  if num_pieces <= window_len:
    return [(0, num_pieces)]
  if stride is None:
    stride = max(1, window_len // 2)
  if not 1 <= stride <= window_len:
    raise ValueError("stride must be in [1, %d], got %d" % (window_len, stride))
  starts = list(range(0, num_pieces - window_len, stride))
  starts.append(num_pieces - window_len)
  return [(s, s + window_len) for s in starts]


def best_window(position, spans):
  """Index of the span where `position` has the most context on both sides."""
  best, best_score = None, -1
  for index, (start, end) in enumerate(spans):
    if start <= position < end:
      score = min(position - start, end - 1 - position)
      if score > best_score:
        best, best_score = index, score
  if best is None:
    raise ValueError("position %d is in no window" % position)
  return best


def convert_sentence(sentence_index, words, labels, label_map, max_seq_length,
                     encoder, stride=None, allow_unknown_labels=False):
  """Returns the InputFeatures (one per window) of one sentence.

  `labels` may be None (nothing to train on: all label ids are 0). A label
  missing from `label_map` raises unless `allow_unknown_labels`, when it is
  given id 0 (only the in-graph eval loss sees it; reports use the strings).
  """
  if max_seq_length < 3:
    raise ValueError("max_seq_length must be >= 3, got %d" % max_seq_length)
  if labels is not None and len(labels) != len(words):
    raise ValueError("sentence %d: %d words but %d labels" %
                     (sentence_index, len(words), len(labels)))
  piece_ids = []
  first_piece = []
  for word in words:
    first_piece.append(len(piece_ids))
    piece_ids.extend(encoder.ids(word))

  label_ids = []
  for i in range(len(words)):
    if labels is None:
      label_ids.append(0)
    elif labels[i] in label_map:
      label_ids.append(label_map[labels[i]])
    elif allow_unknown_labels:
      label_ids.append(0)
    else:
      raise ValueError("sentence %d word %d: label %r is not in the label map"
                       % (sentence_index, i, labels[i]))

  spans = window_spans(len(piece_ids), max_seq_length - 2, stride)
  words_of_window = [[] for _ in spans]
  for word_index, position in enumerate(first_piece):
    words_of_window[best_window(position, spans)].append(word_index)

  features = []
  for (start, end), word_indices in zip(spans, words_of_window):
    input_ids = [encoder.cls_id] + piece_ids[start:end] + [encoder.sep_id]
    length = len(input_ids)
    pad = max_seq_length - length
    feature_labels = [0] * max_seq_length
    label_mask = [0] * max_seq_length
    word_ids = [-1] * max_seq_length
    for word_index in word_indices:
      # +1 for [CLS].
      slot = first_piece[word_index] - start + 1
      feature_labels[slot] = label_ids[word_index]
      label_mask[slot] = 1
      word_ids[slot] = word_index
    features.append(InputFeatures(
        input_ids=input_ids + [0] * pad,
        input_mask=[1] * length + [0] * pad,
        segment_ids=[0] * max_seq_length,
        label_ids=feature_labels,
        label_mask=label_mask,
        is_real_example=1,
        sentence_index=sentence_index,
        word_ids=word_ids))
  return features


def convert_sentences(sentences, label_map, max_seq_length, encoder,
                      stride=None, allow_unknown_labels=False, name="data",
                      log_every=5000):
  """Features for a list of `Sentence`s (tokens, labels), in sentence order."""
  features = []
  started = time.time()
  for index, sentence in enumerate(sentences):
    features.extend(convert_sentence(
        index, sentence.tokens, sentence.labels, label_map, max_seq_length,
        encoder, stride=stride, allow_unknown_labels=allow_unknown_labels))
    if log_every and (index + 1) % log_every == 0:
      rate = (index + 1) / max(time.time() - started, 1e-9)
      logging.info("%s: converted %d/%d sentences (%.0f sentences/s)", name,
                   index + 1, len(sentences), rate)
  windowed = len(features) - len(sentences)
  logging.info("%s: %d sentences -> %d features (%d extra windows for long "
               "sentences) in %.1fs", name, len(sentences), len(features),
               windowed, time.time() - started)
  return features


def padding_feature(max_seq_length):
  zeros = [0] * max_seq_length
  return InputFeatures(
      input_ids=list(zeros), input_mask=list(zeros), segment_ids=list(zeros),
      label_ids=list(zeros), label_mask=list(zeros), is_real_example=0,
      sentence_index=-1, word_ids=[-1] * max_seq_length)


def pad_to_batch_multiple(features, batch_size, max_seq_length):
  """Appends padding examples so that len(features) % batch_size == 0."""
  padded = list(features)
  while len(padded) % batch_size:
    padded.append(padding_feature(max_seq_length))
  return padded


def _int_feature(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def write_tfrecord(features, output_file):
  """Writes features to `output_file` atomically."""
  with file_utils.atomic_path(output_file) as tmp:
    with tf.io.TFRecordWriter(tmp) as writer:
      for feature in features:
        record = collections.OrderedDict()
        for key in FEATURE_KEYS:
          value = getattr(feature, key)
          record[key] = _int_feature(value if isinstance(value, list)
                                     else [value])
        example = tf.train.Example(
            features=tf.train.Features(feature=record))
        writer.write(example.SerializeToString())


def name_to_features(seq_length):
  spec = {key: tf.FixedLenFeature([seq_length], tf.int64)
          for key in FEATURE_KEYS if key != "is_real_example"}
  spec["is_real_example"] = tf.FixedLenFeature([], tf.int64)
  return spec


SEQUENCE_KEYS = ("input_ids", "input_mask", "segment_ids", "label_ids",
                 "label_mask")


def default_bucket_boundaries(max_seq_length):
  """Window-length bucket edges: 16, 24, 32, 48, 64, 96, ... < max."""
  edges, edge = [], 16
  while edge < max_seq_length:
    edges.append(edge)
    edges.append(edge * 3 // 2)
    edge *= 2
  return sorted(e for e in set(edges) if e < max_seq_length)


def _trim_example(example):
  """One window without its trailing padding (at least 1 position)."""
  length = tf.maximum(tf.reduce_sum(example["input_mask"]), 1)
  out = dict(example)
  for key in SEQUENCE_KEYS:
    out[key] = example[key][:length]
  return out


def _trim_batch(batch):
  """A batch cut to its longest window (at least 1 position)."""
  length = tf.maximum(tf.reduce_max(tf.reduce_sum(batch["input_mask"], 1)),
                      1)
  out = dict(batch)
  for key in SEQUENCE_KEYS:
    out[key] = batch[key][:, :length]
  return out


def bucket_batches(dataset, batch_size, boundaries, drop_remainder):
  """Batches of windows of similar length, each padded to its longest."""
  dataset = dataset.map(_trim_example, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.bucket_by_sequence_length(
      lambda example: tf.shape(example["input_ids"])[0],
      bucket_boundaries=list(boundaries),
      bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
      drop_remainder=drop_remainder)


def length_order(features):
  """Indices of `features`, longest window first (stable)."""
  lengths = [sum(f.input_mask) for f in features]
  return sorted(range(len(features)), key=lambda i: -lengths[i])


def file_based_input_fn_builder(input_file, seq_length, is_training,
                                drop_remainder, shuffle_buffer=1000,
                                seed=None, bucket_boundaries=None,
                                trim_to_batch=False):
  """An `input_fn` for TPUEstimator reading a file written by write_tfrecord.

  Training shuffles before repeating: with `shuffle_buffer` >= the number of
  records each epoch is a fresh permutation, and a restarted input pipeline
  (one `train` call per checkpoint) does not replay the head of the file.
  `seed` fixes the shuffle order. `bucket_boundaries` (training) and
  `trim_to_batch` give length-aware batches (CPU/GPU only; module doc).
  """
  spec = name_to_features(seq_length)

  def decode(record):
    example = tf.parse_single_example(record, spec)
    # tf.Example holds int64; TPUs want int32.
    return {name: tf.cast(t, tf.int32) for name, t in example.items()}

  def input_fn(params):
    batch_size = params["batch_size"]
    d = tf.data.TFRecordDataset(input_file)
    if is_training:
      d = d.shuffle(buffer_size=max(1, shuffle_buffer), seed=seed,
                    reshuffle_each_iteration=True)
      d = d.repeat()
    d = d.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if bucket_boundaries:
      d = bucket_batches(d, batch_size, bucket_boundaries, drop_remainder)
    else:
      d = d.batch(batch_size, drop_remainder=drop_remainder)
      if trim_to_batch:
        d = d.map(_trim_batch)
    return d.prefetch(tf.data.AUTOTUNE)

  return input_fn


def features_to_arrays(features):
  """Dict of int32 arrays (one row per feature) under FEATURE_KEYS."""
  return {key: np.asarray([getattr(f, key) for f in features], dtype=np.int32)
          for key in FEATURE_KEYS}


def in_memory_input_fn_builder(features, is_training, drop_remainder):
  """An `input_fn` over features held in memory (small data, benchmarks)."""
  arrays = features_to_arrays(features)

  def input_fn(params):
    d = tf.data.Dataset.from_tensor_slices(arrays)
    if is_training:
      d = d.repeat().shuffle(buffer_size=len(features))
    return d.batch(params["batch_size"], drop_remainder=drop_remainder)

  return input_fn


def assemble_word_values(features, per_position, sentence_lengths):
  """Per sentence, the value each word got at its labelled position.

  Args:
    features: the real (not padding) features, as produced for the sentences.
    per_position: per feature, a sequence of values per position (label ids,
      or rows of label probabilities).
    sentence_lengths: number of words of each sentence.

  Raises:
    ValueError: if a word gets no value or more than one.
  """
  per_position = list(per_position)
  if len(per_position) != len(features):
    raise ValueError("%d features but %d predictions" %
                     (len(features), len(per_position)))
  out = [[None] * n for n in sentence_lengths]
  for feature, values in zip(features, per_position):
    if not feature.is_real_example:
      continue
    row = out[feature.sentence_index]
    for slot, word_index in enumerate(feature.word_ids):
      if word_index < 0:
        continue
      if row[word_index] is not None:
        raise ValueError("sentence %d word %d predicted twice" %
                         (feature.sentence_index, word_index))
      row[word_index] = values[slot]
  for index, row in enumerate(out):
    if any(value is None for value in row):
      missing = [value is None for value in row].index(True)
      raise ValueError("sentence %d word %d got no prediction" %
                       (index, missing))
  return out


def assemble_predictions(features, predicted_ids, sentence_lengths,
                         id_to_label):
  """Word-level predicted labels per sentence, in the original order
  (`assemble_word_values` of label ids, mapped through `id_to_label`)."""
  rows = assemble_word_values(features, predicted_ids, sentence_lengths)
  return [[id_to_label[int(i)] for i in row] for row in rows]
