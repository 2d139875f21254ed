r"""Exports the checkpoint run_ner.py selected (or an ensemble of several
runs) as a servable SavedModel.

  python -m bio.serving.export --model_dir=RUN_NER_OUTPUT_DIR --export_dir=DIR \
      [--precision=fp32|bf16] [--max_batch_tokens=4096] [--length_multiple=16]
  python -m bio.serving.export --model_dir=ENSEMBLE_OUTPUT_DIR --export_dir=DIR

Signatures (standard `predict` signature defs, so TensorFlow Serving and
`saved_model_cli show --all` see them):

* `serving_default`: `text` string [B] of raw UTF-8 → `num_entities` int32
  [B]; `starts`, `ends` int32 [B, N] (Unicode code-point offsets, padded with
  -1); `types`, `texts` string [B, N]; `scores` float32 [B, N], the mean
  probability of the entity's predicted labels, decoded by --decode (argmax,
  IOB2 Viterbi, or a CRF head's Viterbi, bio.ner.decoding; by default the
  decoder run_ner.py chose the checkpoint with). Everything runs in the
  graph: words are split as the BioNER corpora are (bio.text.word_tokenize),
  pre-processed as ALBERT does (NFKD, accents stripped, lower case), cut
  into SentencePiece pieces by tensorflow_text, and windowed exactly like
  bio.ner.features so that no word goes unpredicted.
* `tokens`: `input_ids`, `input_mask`, `segment_ids` int32 [B, S] →
  `label_ids` int32 [B, S] and `probabilities` float32 [B, S, labels]
  (zero probabilities, label 0, beyond a row's padded width).

Length-aware computation (issue 12; --nolength_aware restores the old
graph): both signatures sort the windows of a request by length and run
them in sub-batches (a tf.while_loop) of at most --max_batch_tokens padded
pieces, each padded only to its longest window rounded up to a multiple of
--length_multiple (never beyond max_seq_length): a 3-word sentence beside a
long abstract is not padded to the abstract's windows, and the shapes the
kernels see are bounded. Whole texts are windowed exactly as before; the
entities equal the fixed-length graph's (scores to float rounding).
--precision=bf16 computes the encoder in bfloat16 (float32 variables, layer
norm, attention softmax and classifier: modeling.AlbertModel's
compute_dtype); fast only on CPUs with bfloat16 instructions (AVX512-BF16,
AMX) or accelerators, emulated (much slower) elsewhere.

The SentencePiece model is embedded in the graph (tensorflow_text needs its
bytes as an op attribute) and also shipped under assets/; the label list is
in assets/label_map.json, the ServingOptions (precision, ...) in
assets/serving_options.json, and assets/spm_record.json records the model's
path and SHA-256 (albert.vocab_record). Loading needs only tensorflow and
tensorflow_text.

Ensembles: --model_dir may also be an output directory of bio.ner.ensemble
(ensemble.json). The graph then computes every member (member i's
variables under `member_i/`, restored from the checkpoint the ensemble
recorded) and combines them as bio.ner.ensemble does: the geometric mean of
their label probabilities, renormalised, and for --decode=crf the mean of
their CRF scores (constants in the graph); --decode defaults to the
ensemble's. The signatures are the same, so bio.serving.tag serves an
ensemble like one model. The members must share their SentencePiece model,
lower-casing, max_seq_length and labels (in any order); their configs may
differ. assets/ensemble.json records the members. --checkpoint,
--albert_config_file, --spm_model_file and --max_seq_length are refused
there: each member's come from its run directory.

--export_dir may be gs://; an existing non-empty directory is refused (it
may be the training run) and a previous export is replaced only with
--overwrite (albert.export_to_tfhub.check_export_dir). The SentencePiece
model is checked against the one recorded with the checkpoint.
"""
import dataclasses
import json
import os
import shutil
import sys
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import tensorflow.compat.v1 as tf
import tensorflow_text as tf_text

from albert import export_to_tfhub
from albert import file_utils
from albert import modeling
from albert import vocab_record
from bio.ner import crf as ner_crf
from bio.ner import decoding
from bio.ner import model as ner_model
from bio.ner import run_dir

# Mirrors word_tokenize._TOKEN_RE in RE2 syntax: whitespace (Unicode
# separators too) and invisible control/format characters only separate;
# every visible character outside a letter/digit/mark run is its own token.
_SEPARATORS = r"\s\p{Z}\p{Cc}\p{Cf}"
_WORD_CHARS = r"\p{L}\p{N}\p{M}"
DELIM_PATTERN = r"[%s]+|[^%s%s]" % (_SEPARATORS, _WORD_CHARS, _SEPARATORS)
KEEP_PATTERN = r"[^%s%s]" % (_WORD_CHARS, _SEPARATORS)
_PAD_OFFSET = -1


class ExportError(ValueError):
  """A model directory that cannot be exported."""


PRECISIONS = ("fp32", "bf16")
SERVING_OPTIONS_FILE = "serving_options.json"


@dataclasses.dataclass(frozen=True)
class ServingOptions:
  """How the serving graph computes (recorded in assets/serving_options.json).

  precision: "fp32", or "bf16" (encoder in bfloat16, float32 variables).
  length_aware: sort the windows of a request by length and run them in
    sub-batches padded only to their longest window; False pads every window
    to max_seq_length in one call (the graph before issue 12).
  max_batch_tokens: padded pieces per model call (a call has at least one
    window).
  length_multiple: widths are rounded up to this, to bound distinct shapes.
  decode: word labels from the probabilities (bio.ner.decoding): "argmax",
    "viterbi" or "crf" (a model fine-tuned with the CRF head); None takes
    the decoder the run chose its checkpoint with.
  """
  precision: str = "fp32"
  length_aware: bool = True
  max_batch_tokens: int = 4096
  length_multiple: int = 16
  decode: Optional[str] = None

  def __post_init__(self):
    if self.precision not in PRECISIONS:
      raise ExportError("--precision must be one of %s, got %r" %
                        ("|".join(PRECISIONS), self.precision))
    if self.decode is not None:
      try:
        decoding.check_decoder(self.decode)
      except ValueError as e:
        raise ExportError(str(e)) from e
    if self.max_batch_tokens < 1 or self.length_multiple < 1:
      raise ExportError("--max_batch_tokens and --length_multiple must be "
                        ">= 1")


def _label_codes(label_list):
  """Per label: prefix code (0 O, 1 B, 2 I) and index of its entity type."""
  types, prefixes, type_ids = [], [], []
  for label in label_list:
    if label == "O":
      prefixes.append(0)
      type_ids.append(-1)
      continue
    prefix, _, etype = label.partition("-")
    prefixes.append(1 if prefix == "B" else 2)
    if etype not in types:
      types.append(etype)
    type_ids.append(types.index(etype))
  return prefixes, type_ids, types


def split_words(text):
  """Words of each text with code-point offsets, all as ragged [B, W]."""
  # regex_split stops at a NUL; as a one-byte space it separates like the
  # other control characters, and every byte offset stays the same.
  spaced = tf.strings.regex_replace(text, r"\x00", " ")
  words, byte_starts, byte_ends = tf_text.regex_split_with_offsets(
      spaced, DELIM_PATTERN, KEEP_PATTERN)
  _, char_bytes = tf.strings.unicode_decode_with_offsets(text, "UTF-8")
  big = tf.int64.max
  char_bytes = tf.cast(char_bytes, tf.int64).to_tensor(default_value=big)

  def to_code_points(byte_offsets):
    padded = byte_offsets.to_tensor(default_value=big)
    cps = tf.searchsorted(char_bytes, padded, side="left")
    return tf.RaggedTensor.from_tensor(
        tf.cast(cps, tf.int32), lengths=byte_offsets.row_lengths())

  return words, to_code_points(byte_starts), to_code_points(byte_ends)


def word_piece_ids(words, sp_model_bytes, do_lower_case, unk_id):
  """Ragged [B, W, P] piece ids; a word with no piece gets [unk]."""
  flat = words.flat_values
  # tokenization.preprocess_text: NFKD, drop combining marks, lower case.
  flat = tf_text.normalize_utf8(flat, "NFKD")
  flat = tf.strings.regex_replace(flat, r"\p{Mn}", "")
  if do_lower_case:
    flat = tf.strings.lower(flat, encoding="utf-8")
  tokenizer = tf_text.SentencepieceTokenizer(model=sp_model_bytes)
  pieces = tokenizer.tokenize(flat)
  lengths = pieces.row_lengths()
  with_unk = tf.concat(
      [pieces, tf.fill([tf.shape(flat)[0], 1], tf.cast(unk_id, pieces.dtype))],
      axis=1)
  keep = tf.ragged.range(lengths + 1) < tf.expand_dims(
      tf.maximum(lengths, 1), 1)
  pieces = tf.ragged.boolean_mask(with_unk, keep)
  return words.with_flat_values(tf.cast(pieces, tf.int32))


def build_windows(pieces, max_seq_length, cls_id, sep_id):
  """ner_features' windows, batched over texts.

  Args:
    pieces: ragged [B, W, P] piece ids.

  Returns:
    A dict with the window features [num_windows, max_seq_length] and, per
    word (flattened over the batch), the window and slot that predict it.
  """
  window_len = max_seq_length - 2
  stride = max(1, window_len // 2)
  text_pieces = pieces.merge_dims(1, 2)  # [B, P]
  num_pieces = tf.cast(text_pieces.row_lengths(), tf.int32)
  # Windows start every `stride` pieces; the last is aligned with the end.
  extra = tf.maximum(num_pieces - window_len, 0)
  num_windows = 1 + (extra + stride - 1) // stride
  window_index = tf.ragged.range(num_windows).to_tensor(default_value=-1)
  last = tf.expand_dims(num_windows - 1, 1)
  starts = tf.where_v2(tf.equal(window_index, last), tf.expand_dims(extra, 1),
                       window_index * stride)
  starts = tf.RaggedTensor.from_tensor(starts, lengths=num_windows)
  window_text = starts.value_rowids()
  window_start = starts.flat_values
  window_body = tf.minimum(window_len, tf.gather(num_pieces, window_text) -
                           window_start)

  flat_pieces = tf.concat([text_pieces.flat_values, [0]], axis=0)
  piece_offset = tf.cast(text_pieces.row_starts(), tf.int32)
  positions = tf.range(window_len)
  valid = positions[None, :] < window_body[:, None]
  index = (tf.gather(piece_offset, window_text)[:, None] +
           window_start[:, None] + positions[None, :])
  body = tf.where_v2(valid, tf.gather(flat_pieces, tf.where_v2(valid, index, 0)),
                  tf.zeros_like(index))
  num_real = tf.shape(window_start)[0]
  input_ids = tf.concat([tf.fill([num_real, 1], cls_id), body,
                         tf.zeros([num_real, 1], tf.int32)], axis=1)
  input_ids += sep_id * tf.one_hot(window_body + 1, max_seq_length,
                                   dtype=tf.int32)
  input_mask = tf.cast(tf.range(max_seq_length)[None, :] <
                       (window_body + 2)[:, None], tf.int32)

  # The first piece of each word, as a position within its text.
  word_lengths = tf.cast(pieces.row_lengths(axis=2), tf.int32)  # ragged [B,W]
  first = tf.cumsum(word_lengths, axis=1, exclusive=True)
  word_text = first.value_rowids()
  word_pos = first.flat_values
  # Best window: most context on both sides, ties to the earlier window.
  cand = tf.gather(starts.to_tensor(default_value=-1), word_text)  # [Nw, K]
  cand_ok = ((tf.range(tf.shape(cand)[1])[None, :] <
              tf.gather(num_windows, word_text)[:, None]) &
             (cand <= word_pos[:, None]) &
             (word_pos[:, None] < cand + window_len))
  score = tf.minimum(word_pos[:, None] - cand,
                     cand + window_len - 1 - word_pos[:, None])
  score = tf.where_v2(cand_ok, score, tf.fill(tf.shape(score), -1))
  best = tf.argmax(score, axis=1, output_type=tf.int32)
  chosen_start = tf.gather(cand, best, batch_dims=1)
  word_window = tf.gather(tf.cast(starts.row_starts(), tf.int32),
                          word_text) + best
  word_slot = word_pos - chosen_start + 1
  return {
      "input_ids": input_ids,
      "input_mask": input_mask,
      "segment_ids": tf.zeros_like(input_ids),
      "word_window": word_window,
      "word_slot": word_slot,
      "word_text": word_text,
  }


def decode_entities(label_ids, label_probs, word_text, word_starts, word_ends,
                    text, label_list):
  """Entities from per-word IOB2 labels (conlleval chunking, as seqeval's default).

  All word inputs are flat over the batch; `word_text` maps words to texts.
  """
  prefixes, type_ids, types = _label_codes(label_list)
  prefix = tf.gather(tf.constant(prefixes, tf.int32), label_ids)
  etype = tf.gather(tf.constant(type_ids, tf.int32), label_ids)
  prev_prefix = tf.concat([[0], prefix[:-1]], axis=0)
  prev_type = tf.concat([[-1], etype[:-1]], axis=0)
  prev_text = tf.concat([[-1], word_text[:-1]], axis=0)
  inside = prefix > 0
  # tf.equal, not ==: under TF1 behaviour == compares tensor identity.
  starts_chunk = inside & (tf.equal(prefix, 1) |
                           tf.not_equal(prev_text, word_text) |
                           tf.equal(prev_prefix, 0) |
                           tf.not_equal(prev_type, etype))
  chunk = tf.cumsum(tf.cast(starts_chunk, tf.int32)) - 1
  num = tf.reduce_sum(tf.cast(starts_chunk, tf.int32))
  seg = tf.boolean_mask(chunk, inside)

  def per_chunk(values, reduce_fn):
    return reduce_fn(tf.boolean_mask(values, inside), seg, num)

  ent_start = per_chunk(word_starts, tf.math.unsorted_segment_min)
  ent_end = per_chunk(word_ends, tf.math.unsorted_segment_max)
  ent_text_row = per_chunk(word_text, tf.math.unsorted_segment_min)
  ent_type = per_chunk(etype, tf.math.unsorted_segment_min)
  ent_score = per_chunk(label_probs, tf.math.unsorted_segment_mean)
  ent_surface = tf.strings.substr(tf.gather(text, ent_text_row), ent_start,
                                  ent_end - ent_start, unit="UTF8_CHAR")
  type_names = tf.gather(tf.constant(types or [""], tf.string),
                         tf.maximum(ent_type, 0))
  batch = tf.shape(text, out_type=tf.int64)[0]
  rowids = tf.cast(ent_text_row, tf.int64)

  def pad(values, default):
    ragged = tf.RaggedTensor.from_value_rowids(values, rowids, nrows=batch)
    return ragged, ragged.to_tensor(default_value=default)

  ragged_starts, starts = pad(ent_start, _PAD_OFFSET)
  return {
      "num_entities": tf.cast(ragged_starts.row_lengths(), tf.int32),
      "starts": starts,
      "ends": pad(ent_end, _PAD_OFFSET)[1],
      "types": pad(type_names, "")[1],
      "texts": pad(ent_surface, "")[1],
      "scores": pad(ent_score, 0.0)[1],
  }


def single_model_fn(albert_config, num_labels, precision="fp32"):
  """(input_ids, input_mask, segment_ids) [b, w] -> label probabilities
  [b, w, num_labels] of one fine-tuned model (run_ner.py's variables)."""
  def model_fn(ids, mask, segments):
    return _token_model(albert_config, num_labels, ids, mask, segments,
                        precision)
  return model_fn


def member_scope(index):
  """The variable scope of an ensemble's member `index` in the graph."""
  return "member_%d" % index


def ensemble_model_fn(members, precision="fp32"):
  """As single_model_fn, for several models combined as bio.ner.ensemble
  combines them: the geometric mean of their label probabilities,
  renormalised (a softmax of their mean floored log-probabilities).

  Args:
    members: [(albert_config, columns)]: member i's variables are under
      member_scope(i); `columns` are the ids, in the member's own label
      order, of the ensemble's labels (members may order labels apart).
  """
  def model_fn(ids, mask, segments):
    logs = []
    for index, (albert_config, columns) in enumerate(members):
      with tf.variable_scope(member_scope(index), reuse=tf.AUTO_REUSE):
        probs = _token_model(albert_config, len(columns), ids, mask,
                             segments, precision)
      probs = tf.gather(probs, columns, axis=-1)
      logs.append(tf.math.log(tf.maximum(probs, decoding.LOG_FLOOR)))
    return tf.nn.softmax(tf.add_n(logs) / float(len(logs)), axis=-1)
  return model_fn


def _token_model(albert_config, num_labels, input_ids, input_mask,
                 segment_ids, precision="fp32"):
  """Per-piece label probabilities with the training graph's variables.

  With precision "bf16" the encoder computes in bfloat16 through casts of its
  float32 variables (modeling.AlbertModel's compute_dtype: layer norm and the
  attention softmax stay float32); the classifier and softmax are float32.
  """
  kwargs = {}
  if precision == "bf16":
    kwargs["compute_dtype"] = tf.bfloat16
  with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
    try:
      model = modeling.AlbertModel(
          config=albert_config, is_training=False, input_ids=input_ids,
          input_mask=input_mask, token_type_ids=segment_ids,
          use_one_hot_embeddings=False, scope=ner_model.ENCODER_SCOPE,
          **kwargs)
    except TypeError as e:
      raise ExportError("--precision=%s needs modeling.AlbertModel's "
                        "compute_dtype (%s)" % (precision, e)) from e
    logits = ner_model.token_classifier(model.get_sequence_output(),
                                        num_labels, is_training=False)
  return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)


def plan_sub_batches(lengths, max_len, opts):
  """Groups windows into length-homogeneous model calls.

  Args:
    lengths: int32 [N], real pieces per window ([CLS] and [SEP] included).
    max_len: int32 scalar, the padded width of the windows (no call is
      wider).
    opts: ServingOptions.

  Returns:
    (order, starts, ends, widths): the windows sorted by padded width (a
    stable sort), and per call the slice [starts[i], ends[i]) of `order` it
    runs and its width: the longest window of the call rounded up to a
    multiple of opts.length_multiple, at most `max_len`. A call holds at
    most max(1, opts.max_batch_tokens // width) windows.
  """
  multiple = opts.length_multiple
  widths = tf.minimum((lengths + multiple - 1) // multiple * multiple,
                      max_len)
  order = tf.argsort(widths, stable=True)
  sorted_widths = tf.gather(widths, order)
  rows = tf.maximum(1, opts.max_batch_tokens // tf.maximum(sorted_widths, 1))
  index = tf.range(tf.size(order))
  group_start = tf.searchsorted(sorted_widths, sorted_widths, side="left")
  is_first = tf.equal(tf.math.floormod(index - group_start, rows), 0)
  starts = tf.boolean_mask(index, is_first)
  ends = tf.concat([starts[1:], tf.size(order)[None]], axis=0)
  return order, starts, ends, tf.gather(sorted_widths, starts)


def run_length_aware(model_fn, features, lengths, num_labels, opts):
  """model_fn on `features` in sub-batches of plan_sub_batches.

  Args:
    model_fn: (input_ids, input_mask, segment_ids) [b, w] -> probabilities
      [b, w, num_labels].
    features: dict of int32 [N, S] input_ids, input_mask, segment_ids.
    lengths: int32 [N]; positions from lengths[i] on are padding.

  Returns:
    float32 [N, S, num_labels], zero beyond each window's padded width.
  """
  max_len = tf.shape(features["input_ids"])[1]
  order, starts, ends, widths = plan_sub_batches(lengths, max_len, opts)
  names = ("input_ids", "input_mask", "segment_ids")

  def body(i, outputs):
    rows = order[starts[i]:ends[i]]
    inputs = [tf.gather(features[k], rows)[:, :widths[i]] for k in names]
    probs = model_fn(*inputs)
    probs = tf.pad(probs, [[0, 0], [0, max_len - widths[i]], [0, 0]])
    return i + 1, outputs.write(i, probs)

  outputs = tf.TensorArray(tf.float32, size=tf.size(starts),
                           infer_shape=False,
                           element_shape=[None, None, num_labels])
  _, outputs = tf.while_loop(lambda i, _: i < tf.size(starts), body,
                             [tf.constant(0), outputs],
                             parallel_iterations=1)
  sorted_probs = tf.reshape(outputs.concat(), [-1, max_len, num_labels])
  return tf.gather(sorted_probs, tf.math.invert_permutation(order))


def _window_lengths(input_mask):
  """Per window, one past its last unmasked position (at least 1)."""
  positions = tf.range(1, tf.shape(input_mask)[1] + 1)
  return tf.maximum(1, tf.reduce_max(
      tf.where_v2(tf.not_equal(input_mask, 0), positions[None, :], 0), 1))


def _probabilities(model_fn, num_labels, features, opts):
  """Window probabilities [N, S, labels], as opts says they are computed."""
  if not opts.length_aware:
    return model_fn(features["input_ids"], features["input_mask"],
                    features["segment_ids"])
  return run_length_aware(model_fn, features,
                          _window_lengths(features["input_mask"]),
                          num_labels, opts)


def _word_labels(word_probs, word_text, num_texts, label_list, decode,
                 crf=None):
  """Label ids of the words (flat over the batch; word_text: their text).

  `crf`: with decode "crf", the CRF's scores as constants (an ensemble's
  mean); by default the model's own variables."""
  if decode == "argmax":
    return tf.argmax(word_probs, -1, output_type=tf.int32)
  if decode == "crf" and crf is not None:
    crf = ner_crf.CrfParams(*[tf.constant(v, tf.float32) for v in crf])
  elif decode == "crf":
    with tf.variable_scope(ner_model.CLASSIFIER_SCOPE, reuse=tf.AUTO_REUSE):
      crf = ner_crf.create_params(len(label_list))
  ragged = tf.RaggedTensor.from_value_rowids(word_probs, word_text,
                                             nrows=num_texts)
  dense = ragged.to_tensor()
  lengths = tf.cast(ragged.row_lengths(), tf.int32)
  path = decoding.viterbi_graph(dense, lengths, label_list, crf)
  return tf.RaggedTensor.from_tensor(path, lengths=lengths).flat_values


def build_signatures(model_fn, label_list, sp_model_bytes, do_lower_case,
                     max_seq_length, cls_id, sep_id, unk_id, opts=None,
                     crf=None):
  """Both signatures in the default graph, sharing one set of variables.

  `model_fn`: single_model_fn or ensemble_model_fn; `crf`: see
  _word_labels."""
  opts = opts or ServingOptions()
  num_labels = len(label_list)
  feed = {k: tf.placeholder(tf.int32, [None, None], k)
          for k in ("input_ids", "input_mask", "segment_ids")}
  probs = _probabilities(model_fn, num_labels, feed, opts)
  tokens_sig = (feed, {"label_ids": tf.argmax(probs, -1, output_type=tf.int32),
                       "probabilities": probs})

  text = tf.placeholder(tf.string, [None], "text")
  words, word_starts, word_ends = split_words(text)
  pieces = word_piece_ids(words, sp_model_bytes, do_lower_case, unk_id)
  win = build_windows(pieces, max_seq_length, cls_id, sep_id)
  window_probs = _probabilities(model_fn, num_labels, win, opts)
  word_probs = tf.gather_nd(window_probs, tf.stack(
      [win["word_window"], win["word_slot"]], axis=1))
  word_labels = _word_labels(word_probs, win["word_text"],
                             tf.shape(text, out_type=tf.int64)[0], label_list,
                             opts.decode, crf)
  entities = decode_entities(word_labels,
                             tf.gather(word_probs, word_labels, batch_dims=1),
                             win["word_text"], word_starts.flat_values,
                             word_ends.flat_values, text, label_list)
  return {
      tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: ({"text": text},
                                                         entities),
      "tokens": tokens_sig,
  }


@dataclasses.dataclass(frozen=True)
class NerExport(object):
  """What an export of a run_ner.py directory is made of, resolved and
  checked (flags first, then what run_ner.py recorded)."""
  label_list: list
  albert_config_file: str
  spm_model_file: str
  do_lower_case: bool
  max_seq_length: int
  checkpoint: str


def resolve_ner_export(model_dir, albert_config_file=None,
                       spm_model_file=None, do_lower_case=None,
                       max_seq_length=None, checkpoint=None):
  """A checked NerExport; ExportError names what is missing or wrong."""
  if not tf.io.gfile.isdir(model_dir):
    raise ExportError("--model_dir %s does not exist" % model_dir)
  label_list = run_dir.read_label_list(model_dir)
  if label_list is None:
    raise ExportError("%s is not a run_ner.py output directory (no %s)"
                      % (model_dir, run_dir.LABEL_MAP_FILE))
  recorded = run_dir.read_run_config(model_dir)
  albert_config_file = albert_config_file or recorded.get("albert_config_file")
  spm_model_file = spm_model_file or recorded.get("spm_model_file")
  if do_lower_case is None:
    do_lower_case = recorded.get("do_lower_case", True)
  max_seq_length = max_seq_length or recorded.get("max_seq_length")
  for name, value in (("albert_config_file", albert_config_file),
                      ("spm_model_file", spm_model_file),
                      ("max_seq_length", max_seq_length)):
    if not value:
      raise ExportError("--%s is needed (not recorded in %s)" %
                        (name, model_dir))
  for path in (albert_config_file, spm_model_file):
    if not tf.io.gfile.exists(path):
      raise ExportError("file not found: %s" % path)
  checkpoint = checkpoint or run_dir.read_best_checkpoint(model_dir)
  if not checkpoint:
    raise ExportError("no selected checkpoint in %s (run run_ner.py with "
                      "--do_train/--do_eval first)" % model_dir)
  checkpoint = file_utils.resolve_checkpoint(checkpoint, "--checkpoint",
                                             ExportError)
  # Ids of another SentencePiece model would be silently scrambled.
  vocab_record.check(model_dir, spm_model_file, ExportError, "--model_dir")
  vocab_record.check(checkpoint, spm_model_file, ExportError, "--checkpoint")
  return NerExport(label_list, albert_config_file, spm_model_file,
                   do_lower_case, max_seq_length, checkpoint)


@dataclasses.dataclass(frozen=True)
class EnsembleExport(object):
  """bio.ner.ensemble's output directory, resolved and checked: its members
  share one tokenizer and window size, so one graph serves them all."""
  members: tuple  # NerExport each; their label orders may differ
  decode: str
  crf: Optional[ner_crf.CrfParams]  # the mean CRF (decode "crf"), NumPy
  record: dict  # ensemble.json

  @property
  def label_list(self):
    return self.members[0].label_list

  def columns(self):
    """Per member, the ids in its own label order of label_list's labels."""
    return [[m.label_list.index(label) for label in self.label_list]
            for m in self.members]


def _file_bytes(path):
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def resolve_ensemble_export(model_dir, decode=None):
  """A checked EnsembleExport of the ensemble in `model_dir`; `decode`
  overrides the ensemble's decoder."""
  record = run_dir.read_ensemble(model_dir) or {}
  entries = record.get("members") or []
  if len(entries) < 2:
    raise ExportError("%s lists fewer than two members: is it the output of "
                      "bio.ner.ensemble?" % os.path.join(
                          model_dir, run_dir.ENSEMBLE_FILE))
  members = []
  for entry in entries:
    if not tf.io.gfile.isdir(entry.get("run_dir") or ""):
      raise ExportError("member %s of the ensemble in %s no longer exists" %
                        (entry.get("run_dir"), model_dir))
    # A member re-trained since keeps its directory but not this checkpoint:
    # its newer one would not be the model the ensemble was scored with.
    if not tf.io.gfile.exists("%s.index" % entry.get("checkpoint")):
      raise ExportError(
          "checkpoint %s of member %s no longer exists: run bio.ner.ensemble "
          "on the members as they are now, into a new --output_dir, and "
          "export that" %
          (entry.get("checkpoint"), entry["run_dir"]))
    members.append(resolve_ner_export(entry["run_dir"],
                                      checkpoint=entry.get("checkpoint")))
  first = members[0]
  first_spm = _file_bytes(first.spm_model_file)
  for entry, member in zip(entries[1:], members[1:]):
    differ = [name for name in ("do_lower_case", "max_seq_length")
              if getattr(member, name) != getattr(first, name)]
    if _file_bytes(member.spm_model_file) != first_spm:
      differ.insert(0, "SentencePiece model")
    if sorted(member.label_list) != sorted(first.label_list):
      differ.append("labels")
    if differ:
      raise ExportError(
          "members %s and %s differ in %s: one SavedModel serves members "
          "that share their tokenizer, window size and labels" % (
              entries[0]["run_dir"], entry["run_dir"], ", ".join(differ)))
  ensemble = EnsembleExport(tuple(members),
                            decode or record.get("decode") or "viterbi",
                            None, record)
  if ensemble.decode != "crf":
    return ensemble
  crfs = [ner_crf.reorder_params(
      ner_crf.require_params(m.checkpoint, ner_model.CLASSIFIER_SCOPE,
                             ExportError,
                             "export the ensemble with --decode=viterbi"),
      columns) for m, columns in zip(members, ensemble.columns())]
  return dataclasses.replace(ensemble, crf=ner_crf.mean_params(crfs))


def _sp_ids(sp_model_bytes):
  """([CLS] id, [SEP] id, unknown id) of a serialized SentencePiece model."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  sp = spm.SentencePieceProcessor()
  sp.LoadFromSerializedProto(sp_model_bytes)
  return sp.PieceToId("[CLS]"), sp.PieceToId("[SEP]"), sp.unk_id()


def export_ner(model_dir, export_dir, albert_config_file=None,
               spm_model_file=None, do_lower_case=None, max_seq_length=None,
               checkpoint=None, overwrite=False, opts=None):
  """Writes the NER SavedModel for the checkpoint selected in `model_dir`,
  or for the ensemble bio.ner.ensemble wrote there (one graph computing
  every member, combined as the ensemble combines them)."""
  opts = opts or ServingOptions()
  export_to_tfhub.check_export_dir(export_dir, overwrite)
  ensemble = None
  if run_dir.holds_ensemble(model_dir):
    given = [name for name, value in (
        ("albert_config_file", albert_config_file),
        ("spm_model_file", spm_model_file), ("do_lower_case", do_lower_case),
        ("max_seq_length", max_seq_length), ("checkpoint", checkpoint))
             if value is not None]
    if given:
      raise ExportError("--%s cannot be given for the ensemble in %s: each "
                        "member's comes from its run directory" %
                        (given[0], model_dir))
    ensemble = resolve_ensemble_export(model_dir, opts.decode)
    opts = dataclasses.replace(opts, decode=ensemble.decode)
    members = ensemble.members
  else:
    members = (resolve_ner_export(model_dir, albert_config_file,
                                  spm_model_file, do_lower_case,
                                  max_seq_length, checkpoint),)
    if opts.decode is None:
      opts = dataclasses.replace(opts,
                                 decode=run_dir.recorded_decode(model_dir))
    if opts.decode == "crf":
      ner_crf.require_params(members[0].checkpoint,
                             ner_model.CLASSIFIER_SCOPE, ExportError,
                             "export it with --decode=argmax or viterbi")
  ner = members[0]
  configs = [modeling.AlbertConfig.from_json_file(m.albert_config_file)
             for m in members]
  if ensemble is None:
    model_fn = single_model_fn(configs[0], len(ner.label_list),
                               opts.precision)
    checkpoints = ner.checkpoint
  else:
    model_fn = ensemble_model_fn(list(zip(configs, ensemble.columns())),
                                 opts.precision)
    checkpoints = {member_scope(i): m.checkpoint
                   for i, m in enumerate(members)}
  sp_model_bytes = _file_bytes(ner.spm_model_file)

  asset_dir = file_utils.scratch_dir("export-ner-assets-")
  asset_files = {
      "label_map": ("label_map.json", {
          "labels": ner.label_list, "do_lower_case": ner.do_lower_case,
          "max_seq_length": ner.max_seq_length}),
      "serving_options": (SERVING_OPTIONS_FILE, dataclasses.asdict(opts)),
  }
  if ensemble is not None:
    asset_files["ensemble"] = (run_dir.ENSEMBLE_FILE, dict(
        ensemble.record, decode=ensemble.decode,
        scopes=[member_scope(i) for i in range(len(members))]))
  try:
    for name, (filename, payload) in asset_files.items():
      with open(os.path.join(asset_dir, filename), "w",
                encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    with tf.Graph().as_default():
      signatures = build_signatures(
          model_fn, ner.label_list, sp_model_bytes, ner.do_lower_case,
          ner.max_seq_length, *_sp_ids(sp_model_bytes), opts=opts,
          crf=ensemble.crf if ensemble is not None else None)
      assets = [tf.constant(ner.spm_model_file, name="spm_model")]
      assets += [tf.constant(os.path.join(asset_dir, filename), name=name)
                 for name, (filename, _) in asset_files.items()]
      export_to_tfhub.save_graph_as_saved_model(
          export_dir, checkpoints, signatures, assets=assets,
          init_op=tf.tables_initializer(), overwrite=overwrite,
          spm_model_file=ner.spm_model_file)
  finally:
    shutil.rmtree(asset_dir, ignore_errors=True)
  logging.info("Exported %s (labels %s, %s) to %s",
               ", ".join(m.checkpoint for m in members), ner.label_list,
               opts, export_dir)
  return export_dir


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("model_dir", None,
                      "run_ner.py's --output_dir, or bio.ner.ensemble's.")
  flags.DEFINE_string("export_dir", None, "Where to write the SavedModel "
                      "(any tf.io.gfile path, e.g. gs://).")
  flags.DEFINE_bool("overwrite", False,
                    "Replace a previous export at --export_dir (only a "
                    "directory holding saved_model.pb is ever replaced).")
  flags.DEFINE_string("checkpoint", None,
                      "Checkpoint to export instead of the selected one.")
  flags.DEFINE_string("albert_config_file", None,
                      "Defaults to what run_ner.py recorded.")
  flags.DEFINE_string("spm_model_file", None,
                      "Defaults to what run_ner.py recorded.")
  flags.DEFINE_integer("max_seq_length", None,
                       "Defaults to what run_ner.py recorded.")
  flags.DEFINE_enum("precision", "fp32", list(PRECISIONS),
                    "fp32, or bf16: the encoder computes in bfloat16 "
                    "(float32 variables, layer norm and softmax).")
  flags.DEFINE_bool("length_aware", True,
                    "Pad windows per sub-batch of similar length (False: "
                    "every window to max_seq_length, as before).")
  flags.DEFINE_integer("max_batch_tokens", ServingOptions.max_batch_tokens,
                       "Padded pieces per model call.")
  flags.DEFINE_integer("length_multiple", ServingOptions.length_multiple,
                       "Window widths are rounded up to a multiple of this.")
  flags.DEFINE_enum("decode", None, list(decoding.DECODERS),
                    "Word labels from the probabilities: argmax, viterbi, or "
                    "crf for a model fine-tuned with --decode=crf "
                    "(bio.ner.decoding). Default: the decoder run_ner.py "
                    "chose the checkpoint with (its --decode).")


def main(_):
  try:
    opts = ServingOptions(FLAGS.precision, FLAGS.length_aware,
                          FLAGS.max_batch_tokens, FLAGS.length_multiple,
                          FLAGS.decode)
    export_ner(FLAGS.model_dir, FLAGS.export_dir,
               albert_config_file=FLAGS.albert_config_file,
               spm_model_file=FLAGS.spm_model_file,
               max_seq_length=FLAGS.max_seq_length,
               checkpoint=FLAGS.checkpoint, overwrite=FLAGS.overwrite,
               opts=opts)
  except (ExportError, FileNotFoundError, ValueError) as e:
    sys.stderr.write("export_ner: error: %s\n" % e)
    sys.exit(1)
  print(FLAGS.export_dir)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["model_dir", "export_dir"])
  app.run(main)
