# coding=utf-8
"""Masked-LM / sentence-order TF examples for ALBERT pretraining.

Library half of google-research/albert `create_pretraining_data.py`, ported
to Python 3 and TF 2.15 `tf.compat.v1`. Upstream reads its absl flags deep
inside these functions; here every such flag is an explicit keyword argument
with upstream's default. `define_data_flags` defines the flags shared by the
top-level script and its Beam form, `options_from_flags` reads them into a
`DataOptions`, and `run(CommandOptions.from_flags())` is the script's work.
Settings that would write instances without masks (--max_seq_length below
MIN_MAX_SEQ_LENGTH, --max_predictions_per_seq 0, --masked_lm_prob 0) are
rejected by `validate_options`, unlike upstream.

The algorithm and the order of random draws are upstream's, so that for the
same input, tokenizer and seeds the output bytes are upstream's. Upstream
draws n-gram lengths from NumPy's global generator without seeding it; the
functions here take an `np_rng` (a `np.random.RandomState`, default: NumPy's
global generator), and `run_single_process` seeds one with `random_seed`,
which draws exactly what `np.random.seed(random_seed)` would.

Two ways to run:
  * `run_single_process`: upstream's mode. All documents of all inputs are
    pooled, shuffled and written round-robin to the output files; memory
    grows with the whole corpus.
  * `run_sharded` / `process_shard`: one output file per input shard, each
    shard processed on its own (so memory is bounded by the largest shard)
    with seed `shard_seed(random_seed, shard_index)`, in a pool of worker
    processes. Each output is written to a hidden temporary name and renamed
    when complete, so an existing output is complete and a re-run skips it.
    `process_shard` needs only a tokenizer, so an Apache Beam DoFn can call
    it (build the tokenizer in `DoFn.setup`).
"""

import bisect
import collections
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import multiprocessing
import os
import random
import time
import traceback
from typing import Optional

from absl import flags
from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import estimator_utils
from albert import file_utils
from albert import modeling
from albert import tokenization

# Instances are written in this many-record batches between flushes. Upstream
# flushed at random (using the global `random` module); flushing does not
# change the bytes, so a fixed cadence that touches no generator is used.
_FLUSH_EVERY = 1000
_PROGRESS_SECONDS = 30.0


class InputError(ValueError):
  """Unusable input: the message names the file (and line) and the problem."""


class TrainingInstance(object):
  """A single training instance (sentence pair)."""

  def __init__(self, tokens, segment_ids, masked_lm_positions, masked_lm_labels,
               is_random_next, token_boundary):
    self.tokens = tokens
    self.segment_ids = segment_ids
    self.is_random_next = is_random_next
    self.token_boundary = token_boundary
    self.masked_lm_positions = masked_lm_positions
    self.masked_lm_labels = masked_lm_labels

  def __str__(self):
    def join(values):
      return " ".join(str(v) for v in values)
    lines = [
        "tokens: %s" % " ".join(
            tokenization.printable_text(t) for t in self.tokens),
        "segment_ids: %s" % join(self.segment_ids),
        "token_boundary: %s" % join(self.token_boundary),
        "is_random_next: %s" % self.is_random_next,
        "masked_lm_positions: %s" % join(self.masked_lm_positions),
        "masked_lm_labels: %s" % " ".join(
            tokenization.printable_text(t) for t in self.masked_lm_labels),
    ]
    return "\n".join(lines) + "\n\n"

  def __repr__(self):
    return self.__str__()


# Every option of upstream's flags that shapes the instances, with upstream's
# defaults except dupe_factor (BioALBERT used 5, upstream 40).
DataOptions = collections.namedtuple(
    "DataOptions",
    ["max_seq_length", "dupe_factor", "short_seq_prob", "masked_lm_prob",
     "max_predictions_per_seq", "do_lower_case", "do_whole_word_mask",
     "do_permutation", "favor_shorter_ngram", "random_next_sentence",
     "ngram"],
    defaults=[512, 5, 0.1, 0.15, 20, True, True, False, True, False, 3])


# Below these, many instances lose their masks: short sequences cut words
# into pieces that whole-word masking cannot fit into max(1, round(0.15 *
# length)) predictions (CHEMDNER text, the golden 30k model: 53% of
# instances unmasked at 5, 2% at 16, none at 24). A floor, not a guarantee:
# a small SentencePiece model splits words further.
MIN_MAX_SEQ_LENGTH = 24
MIN_MAX_PREDICTIONS_PER_SEQ = 1


def validate_options(options):
  """Raises ValueError for option values the algorithm cannot work with,
  naming each flag and its allowed range."""
  problems = []
  if options.max_seq_length < MIN_MAX_SEQ_LENGTH:
    problems.append("--max_seq_length must be at least %d (shorter "
                    "sequences leave instances without masked tokens), got "
                    "%d" % (MIN_MAX_SEQ_LENGTH, options.max_seq_length))
  if options.dupe_factor < 1:
    problems.append("--dupe_factor must be at least 1, got %d" %
                    options.dupe_factor)
  if not 0.0 < options.masked_lm_prob <= 1.0:
    problems.append("--masked_lm_prob must be in (0, 1] (0 masks nothing), "
                    "got %r" % options.masked_lm_prob)
  if not 0.0 <= options.short_seq_prob <= 1.0:
    problems.append("--short_seq_prob must be in [0, 1], got %r" %
                    options.short_seq_prob)
  if options.max_predictions_per_seq < MIN_MAX_PREDICTIONS_PER_SEQ:
    problems.append("--max_predictions_per_seq must be at least %d (0 "
                    "writes instances without masks), got %d" % (
                        MIN_MAX_PREDICTIONS_PER_SEQ,
                        options.max_predictions_per_seq))
  if options.ngram < 1:
    problems.append("--ngram must be at least 1, got %d" % options.ngram)
  if problems:
    raise ValueError("; ".join(problems))


class _Progress(object):
  """Logs `done`/`total` with rate and ETA, at most every `interval` seconds."""

  def __init__(self, what, total, interval=_PROGRESS_SECONDS):
    self.what = what
    self.total = total
    self.interval = interval
    self.start = time.time()
    self._last = self.start

  def update(self, done, extra="", force=False):
    now = time.time()
    if not force and now - self._last < self.interval:
      return
    self._last = now
    elapsed = max(now - self.start, 1e-9)
    rate = done / elapsed
    eta = (self.total - done) / rate if rate > 0 else 0.0
    logging.info("%s: %d/%d (%.1f/s)%s, elapsed %s, ETA %s", self.what, done,
                 self.total, rate, extra,
                 estimator_utils.format_seconds(elapsed),
                 estimator_utils.format_seconds(eta))


def _tokens_to_ids(tokenizer, tokens):
  """tokenizer.convert_tokens_to_ids, with a fast path for vocab pieces."""
  # For a piece in `vocab` the tokenizer returns vocab[piece]; the dict
  # lookup avoids its per-piece SentencePiece call. Anything else (bytes, a
  # piece outside the vocab) goes through the tokenizer.
  vocab = tokenizer.vocab
  try:
    return [vocab[token] for token in tokens]
  except (KeyError, TypeError):
    return tokenizer.convert_tokens_to_ids(tokens)


def instance_to_features(instance, tokenizer, max_seq_length,
                         max_predictions_per_seq, do_permutation=False):
  """The padded feature dict (upstream's keys and order) of one instance."""
  input_ids = _tokens_to_ids(tokenizer, instance.tokens)
  input_mask = [1] * len(input_ids)
  segment_ids = list(instance.segment_ids)
  token_boundary = list(instance.token_boundary)
  assert len(input_ids) <= max_seq_length

  padding = max_seq_length - len(input_ids)
  input_ids.extend([0] * padding)
  input_mask.extend([0] * padding)
  segment_ids.extend([0] * padding)
  token_boundary.extend([0] * padding)

  masked_lm_positions = list(instance.masked_lm_positions)
  masked_lm_ids = _tokens_to_ids(tokenizer, instance.masked_lm_labels)
  masked_lm_weights = [1.0] * len(masked_lm_ids)
  # Permutation adds up to as many permuted positions as masked ones.
  num_slots = max_predictions_per_seq * (1 + int(do_permutation))
  padding = num_slots - len(masked_lm_positions)
  masked_lm_positions.extend([0] * padding)
  masked_lm_ids.extend([0] * padding)
  masked_lm_weights.extend([0.0] * padding)

  features = collections.OrderedDict()
  features["input_ids"] = create_int_feature(input_ids)
  features["input_mask"] = create_int_feature(input_mask)
  features["segment_ids"] = create_int_feature(segment_ids)
  features["token_boundary"] = create_int_feature(token_boundary)
  features["masked_lm_positions"] = create_int_feature(masked_lm_positions)
  features["masked_lm_ids"] = create_int_feature(masked_lm_ids)
  features["masked_lm_weights"] = create_float_feature(masked_lm_weights)
  # The name is BERT's; for ALBERT it holds the sentence-order label
  # (1 = segments swapped or B taken from another document).
  features["next_sentence_labels"] = create_int_feature(
      [1 if instance.is_random_next else 0])
  return features


def write_instance_to_example_files(instances, tokenizer, max_seq_length,
                                    max_predictions_per_seq, output_files,
                                    do_permutation=False,
                                    num_logged_examples=20):
  """Writes `TrainingInstance`s round-robin to `output_files` as TFRecords.

  Each file is written under a temporary name and renamed once every file is
  complete; on error the temporary files are removed. Returns the number of
  instances written.
  """
  temp_files = [file_utils.temp_path(path) for path in output_files]
  writers = []
  try:
    for path, temp in zip(output_files, temp_files):
      directory = os.path.dirname(path)
      if directory:
        tf.io.gfile.makedirs(directory)
      writers.append(tf.io.TFRecordWriter(temp))

    progress = _Progress("written instances", len(instances))
    total_written = 0
    for inst_index, instance in enumerate(instances):
      features = instance_to_features(instance, tokenizer, max_seq_length,
                                      max_predictions_per_seq, do_permutation)
      example = tf.train.Example(features=tf.train.Features(feature=features))
      writer = writers[inst_index % len(writers)]
      writer.write(example.SerializeToString())
      total_written += 1
      if total_written % _FLUSH_EVERY == 0:
        writer.flush()
        progress.update(total_written)

      if inst_index < num_logged_examples:
        _log_example(instance, features)

    for writer in writers:
      writer.close()
    writers = []
    for path, temp in zip(output_files, temp_files):
      tf.io.gfile.rename(temp, path, overwrite=True)
  except BaseException:
    for writer in writers:
      writer.close()
    for temp in temp_files:
      file_utils.remove_quietly(temp)
    raise

  logging.info("Wrote %d total instances", total_written)
  return total_written


def _log_example(instance, features):
  logging.info("*** Example ***")
  logging.info("tokens: %s", " ".join(
      tokenization.printable_text(t) for t in instance.tokens))
  for name, feature in features.items():
    values = feature.int64_list.value or feature.float_list.value
    logging.info("%s: %s", name, " ".join(str(v) for v in values))


def create_int_feature(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def create_float_feature(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _numbered_lines(input_file):
  """Yields (line_number, str, bytes read so far) of a UTF-8 file.

  Bad bytes raise InputError naming the file and line.
  """
  # Bytes are split on "\n" only, as tf.gfile's text mode does (a lone "\r"
  # stays inside the line, where preprocessing treats it as a space).
  done = 0
  with tf.io.gfile.GFile(input_file, "rb") as reader:
    for line_number, raw in enumerate(reader, 1):
      done += len(raw)
      try:
        yield line_number, raw.decode("utf-8"), done
      except UnicodeDecodeError as e:
        raise InputError(
            "%s:%d: not valid UTF-8 (byte 0x%02x at column %d: %s)" % (
                input_file, line_number, raw[e.start], e.start + 1,
                e.reason)) from None


def read_documents(input_file, tokenizer, all_documents, do_lower_case=True):
  """Appends the tokenized sentences of `input_file` to `all_documents`.

  Input format (upstream's): one sentence per line, a blank line between
  documents. As upstream, the last document of a file continues into the
  next file unless the file ends with a blank line. Raises InputError if the
  file is not UTF-8 or yields no tokens at all.
  """
  use_spm = tokenizer.sp_model is not None
  num_tokens = 0
  progress = _Progress("bytes of %s read" % input_file,
                       tf.io.gfile.stat(input_file).length)
  for line_number, line, done in _numbered_lines(input_file):
    if line_number % 10000 == 0:
      progress.update(done)
    if use_spm:
      line = tokenization.preprocess_text(line, lower=do_lower_case)
    else:
      line = line.strip()
    if not line:
      # Blank lines separate documents.
      all_documents.append([])
      continue
    tokens = tokenizer.tokenize(line)
    if tokens:
      all_documents[-1].append(tokens)
      num_tokens += len(tokens)
  if not num_tokens:
    raise InputError("%s: no text to use: the file is empty or has only "
                     "blank lines" % input_file)
  return num_tokens


def create_training_instances(input_files, tokenizer, max_seq_length,
                              dupe_factor, short_seq_prob, masked_lm_prob,
                              max_predictions_per_seq, rng, do_lower_case=True,
                              do_whole_word_mask=True, do_permutation=False,
                              favor_shorter_ngram=True,
                              random_next_sentence=False, ngram=3,
                              np_rng=None):
  """Create `TrainingInstance`s from raw text."""
  all_documents = [[]]
  for input_file in input_files:
    start = time.time()
    num_tokens = read_documents(input_file, tokenizer, all_documents,
                                do_lower_case)
    logging.info("Read %s: %d tokens in %.1fs", input_file, num_tokens,
                 time.time() - start)

  all_documents = [document for document in all_documents if document]
  rng.shuffle(all_documents)

  vocab_words = list(tokenizer.vocab.keys())
  use_spm = tokenizer.sp_model is not None
  instances = []
  progress = _Progress("documents (x dupe_factor)",
                       dupe_factor * len(all_documents))
  done = 0
  for _ in range(dupe_factor):
    for document_index in range(len(all_documents)):
      instances.extend(
          create_instances_from_document(
              all_documents, document_index, max_seq_length, short_seq_prob,
              masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
              random_next_sentence=random_next_sentence,
              do_whole_word_mask=do_whole_word_mask, ngram=ngram,
              favor_shorter_ngram=favor_shorter_ngram,
              do_permutation=do_permutation, use_spm=use_spm,
              np_rng=np_rng))
      done += 1
      if done % 1000 == 0:
        progress.update(done, ", %d instances" % len(instances))

  rng.shuffle(instances)
  return instances


def _concat(segments):
  return list(itertools.chain.from_iterable(segments))


def create_instances_from_document(
    all_documents, document_index, max_seq_length, short_seq_prob,
    masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
    random_next_sentence=False, do_whole_word_mask=True, ngram=3,
    favor_shorter_ngram=True, do_permutation=False, use_spm=True, np_rng=None):
  """Creates `TrainingInstance`s for a single document."""
  document = all_documents[document_index]

  # Room for [CLS], [SEP], [SEP].
  max_num_tokens = max_seq_length - 3

  # Mostly fill the whole sequence (padding is wasted compute), but sometimes
  # (short_seq_prob) aim shorter so pretraining also sees the short inputs of
  # fine-tuning. The target is soft; max_seq_length is the hard limit.
  target_seq_length = max_num_tokens
  if rng.random() < short_seq_prob:
    target_seq_length = rng.randint(2, max_num_tokens)

  # Segments A and B are cut at real sentence boundaries rather than at an
  # arbitrary token, so that the order task cannot be solved by the cut.
  instances = []
  current_chunk = []
  current_length = 0
  i = 0
  while i < len(document):
    segment = document[i]
    current_chunk.append(segment)
    current_length += len(segment)
    if i == len(document) - 1 or current_length >= target_seq_length:
      if current_chunk:
        # How many sentences of the chunk go into segment A.
        a_end = 1
        if len(current_chunk) >= 2:
          a_end = rng.randint(1, len(current_chunk) - 1)
        tokens_a = _concat(current_chunk[:a_end])

        tokens_b = []
        if len(current_chunk) == 1 or (
            random_next_sentence and rng.random() < 0.5):
          # B comes from another document.
          is_random_next = True
          target_b_length = target_seq_length - len(tokens_a)
          # Try a few times to avoid picking this same document.
          for _ in range(10):
            random_document_index = rng.randint(0, len(all_documents) - 1)
            if random_document_index != document_index:
              break
          random_document = all_documents[random_document_index]
          random_start = rng.randint(0, len(random_document) - 1)
          for j in range(random_start, len(random_document)):
            tokens_b.extend(random_document[j])
            if len(tokens_b) >= target_b_length:
              break
          # The chunk's sentences not used in A are revisited next time.
          num_unused_segments = len(current_chunk) - a_end
          i -= num_unused_segments
        elif not random_next_sentence and rng.random() < 0.5:
          # Sentence order: the two segments are swapped.
          is_random_next = True
          tokens_b = _concat(current_chunk[a_end:])
          tokens_a, tokens_b = tokens_b, tokens_a
        else:
          is_random_next = False
          tokens_b = _concat(current_chunk[a_end:])
        truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)

        assert len(tokens_a) >= 1
        assert len(tokens_b) >= 1

        tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
        segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)

        (tokens, masked_lm_positions,
         masked_lm_labels, token_boundary) = create_masked_lm_predictions(
             tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng,
             do_whole_word_mask=do_whole_word_mask, ngram=ngram,
             favor_shorter_ngram=favor_shorter_ngram,
             do_permutation=do_permutation, use_spm=use_spm, np_rng=np_rng)
        instances.append(TrainingInstance(
            tokens=tokens,
            segment_ids=segment_ids,
            is_random_next=is_random_next,
            token_boundary=token_boundary,
            masked_lm_positions=masked_lm_positions,
            masked_lm_labels=masked_lm_labels))
      current_chunk = []
      current_length = 0
    i += 1

  return instances


MaskedLmInstance = collections.namedtuple("MaskedLmInstance",
                                          ["index", "label"])

# Upstream's set, typed with a doubled '"' and no "'": an apostrophe therefore
# always starts a new piece. The € and £ entries are UTF-8 bytes, so they
# only ever match bytes pieces.
_SP_SPECIAL_PIECES = frozenset('!"#$%&()*+,-./:;?@[\\]^_`{|}~') | frozenset(
    [u"\u20ac".encode("utf-8"), u"\u00a3".encode("utf-8")])
_SP_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz") | _SP_SPECIAL_PIECES


@functools.lru_cache(maxsize=1 << 16)
def _is_start_piece_sp(piece):
  """Check if the current word piece is the starting piece (sentence piece)."""
  text = piece.decode("utf-8") if isinstance(piece, bytes) else piece
  if (text.startswith(u"\u2581") or text.startswith("<") or
      piece in _SP_SPECIAL_PIECES):
    return True
  # A piece with any character outside a-z and ASCII punctuation (digits,
  # other scripts, ...) is treated as a word of its own.
  return not all(str(char).lower() in _SP_WORD_CHARS for char in piece)


@functools.lru_cache(maxsize=1 << 16)
def _is_start_piece_bert(piece):
  """Check if the current word piece is the starting piece (BERT)."""
  # WordPiece marks continuation pieces with a "##" prefix.
  text = piece.decode("utf-8") if isinstance(piece, bytes) else piece
  return not text.startswith("##")


def is_start_piece(piece, use_spm=True):
  """Upstream chose by --spm_model_file; here the caller says which."""
  if use_spm:
    return _is_start_piece_sp(piece)
  return _is_start_piece_bert(piece)


@functools.lru_cache(maxsize=64)
def _ngram_cdfs(ngram, favor_shorter_ngram):
  """cdfs[k]: the CDF that upstream's np.random.choice call builds over
  n-gram lengths 1..k, computed with the same NumPy operations."""
  # Upstream: p(n) proportional to 1/n (reversed unless favoring shorter).
  pvals = 1. / np.arange(1, ngram + 1)
  pvals /= pvals.sum(keepdims=True)
  if not favor_shorter_ngram:
    pvals = pvals[::-1]
  cdfs = [None]
  for k in range(1, ngram + 1):
    p = pvals[:k] / pvals[:k].sum(keepdims=True)
    cdf = p.cumsum()
    cdf /= cdf[-1]
    cdfs.append(cdf.tolist())
  return cdfs


def _choose_ngram(cand_index_set, cdfs, num_taken, num_to_predict, np_rng):
  """Draws an n-gram length, shortening it to fit; None if nothing fits."""
  # What RandomState.choice(lengths, p=p) does, minus its per-call overhead:
  # one uniform draw, then a right-side search of the CDF.
  n = bisect.bisect_right(cdfs[len(cand_index_set)],
                          np_rng.random_sample()) + 1
  index_set = _concat(cand_index_set[n - 1])
  n -= 1
  while num_taken + len(index_set) > num_to_predict:
    if n == 0:
      break
    index_set = _concat(cand_index_set[n - 1])
    n -= 1
  if num_taken + len(index_set) > num_to_predict:
    return None
  return index_set


def create_masked_lm_predictions(tokens, masked_lm_prob,
                                 max_predictions_per_seq, vocab_words, rng,
                                 do_whole_word_mask=True, ngram=3,
                                 favor_shorter_ngram=True, do_permutation=False,
                                 use_spm=True, np_rng=None):
  """Creates the predictions for the masked LM objective.

  Returns (output_tokens, masked_lm_positions, masked_lm_labels,
  token_boundary), where token_boundary[i] is 1 if token i starts a word (so
  that whole-word masking can also be done on the fly later).
  """
  if np_rng is None:
    np_rng = np.random

  # Each candidate is a list of token positions masked together: one word
  # (all its pieces) with whole-word masking, else one piece.
  cand_indexes = []
  token_boundary = [0] * len(tokens)
  for i, token in enumerate(tokens):
    if token == "[CLS]" or token == "[SEP]":
      token_boundary[i] = 1
      continue
    starts_word = is_start_piece(token, use_spm)
    if do_whole_word_mask and cand_indexes and not starts_word:
      cand_indexes[-1].append(i)
    else:
      cand_indexes.append([i])
      if starts_word:
        token_boundary[i] = 1

  output_tokens = list(tokens)
  masked_lm_positions = []
  masked_lm_labels = []
  if masked_lm_prob == 0:
    return (output_tokens, masked_lm_positions, masked_lm_labels,
            token_boundary)

  num_to_predict = min(max_predictions_per_seq,
                       max(1, int(round(len(tokens) * masked_lm_prob))))

  cdfs = _ngram_cdfs(ngram, favor_shorter_ngram)
  # For each candidate, the n-grams of 1..ngram candidates starting there.
  lengths = range(1, ngram + 1)
  ngram_indexes = [[cand_indexes[idx:idx + n] for n in lengths]
                   for idx in range(len(cand_indexes))]
  rng.shuffle(ngram_indexes)

  masked_lms = []
  covered_indexes = set()
  for cand_index_set in ngram_indexes:
    if len(masked_lms) >= num_to_predict:
      break
    if not cand_index_set:
      continue
    index_set = _choose_ngram(cand_index_set, cdfs, len(masked_lms),
                              num_to_predict, np_rng)
    if index_set is None:
      continue
    if any(index in covered_indexes for index in index_set):
      continue
    for index in index_set:
      covered_indexes.add(index)
      if rng.random() < 0.8:
        masked_token = "[MASK]"
      elif rng.random() < 0.5:
        masked_token = tokens[index]
      else:
        masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
      output_tokens[index] = masked_token
      masked_lms.append(MaskedLmInstance(index=index, label=tokens[index]))
  assert len(masked_lms) <= num_to_predict

  # Upstream reshuffles whether or not permutation is on; keep the draw.
  rng.shuffle(ngram_indexes)

  if do_permutation:
    select_indexes = set()
    for cand_index_set in ngram_indexes:
      if len(select_indexes) >= num_to_predict:
        break
      if not cand_index_set:
        continue
      index_set = _choose_ngram(cand_index_set, cdfs, len(select_indexes),
                                num_to_predict, np_rng)
      if index_set is None:
        continue
      if any(index in covered_indexes or index in select_indexes
             for index in index_set):
        continue
      select_indexes.update(index_set)
    assert len(select_indexes) <= num_to_predict

    select_indexes = sorted(select_indexes)
    permute_indexes = list(select_indexes)
    rng.shuffle(permute_indexes)
    orig_token = list(output_tokens)
    for src_i, tgt_i in zip(select_indexes, permute_indexes):
      output_tokens[src_i] = orig_token[tgt_i]
      masked_lms.append(MaskedLmInstance(index=src_i, label=orig_token[src_i]))

  masked_lms = sorted(masked_lms, key=lambda x: x.index)
  for p in masked_lms:
    masked_lm_positions.append(p.index)
    masked_lm_labels.append(p.label)
  return (output_tokens, masked_lm_positions, masked_lm_labels, token_boundary)


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
  """Truncates a pair of sequences to a maximum sequence length."""
  while len(tokens_a) + len(tokens_b) > max_num_tokens:
    trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    assert len(trunc_tokens) >= 1
    # Cut from the front or the back at random, to avoid a positional bias.
    if rng.random() < 0.5:
      del trunc_tokens[0]
    else:
      trunc_tokens.pop()


def expand_input_patterns(input_file):
  """Paths of a comma-separated list of globs (each glob's matches sorted).

  Raises InputError if a pattern matches nothing.
  """
  return file_utils.expand_globs(input_file, InputError, "input")


def _instances(input_files, tokenizer, options, rng, np_rng):
  return create_training_instances(
      input_files, tokenizer, options.max_seq_length, options.dupe_factor,
      options.short_seq_prob, options.masked_lm_prob,
      options.max_predictions_per_seq, rng,
      do_lower_case=options.do_lower_case,
      do_whole_word_mask=options.do_whole_word_mask,
      do_permutation=options.do_permutation,
      favor_shorter_ngram=options.favor_shorter_ngram,
      random_next_sentence=options.random_next_sentence,
      ngram=options.ngram, np_rng=np_rng)


def run_single_process(input_files, output_files, tokenizer, random_seed,
                       options=DataOptions(), num_logged_examples=20):
  """Upstream's mode: pool all inputs, write round-robin. Returns the count.

  Python's generator is `random.Random(random_seed)` as upstream; NumPy's is
  `RandomState(random_seed)`, equal to upstream after
  `np.random.seed(random_seed)`.
  """
  for input_file in input_files:
    logging.info("  input: %s", input_file)
  rng = random.Random(random_seed)
  np_rng = np.random.RandomState(random_seed)
  instances = _instances(input_files, tokenizer, options, rng, np_rng)
  logging.info("number of instances: %i", len(instances))
  for output_file in output_files:
    logging.info("  output: %s", output_file)
  return write_instance_to_example_files(
      instances, tokenizer, options.max_seq_length,
      options.max_predictions_per_seq, output_files,
      do_permutation=options.do_permutation,
      num_logged_examples=num_logged_examples)


def shard_seed(random_seed, shard_index):
  """The seed of shard `shard_index`: the first 4 bytes, big-endian, of
  SHA-256 of the ASCII text "<random_seed>:<shard_index>".

  Hashing (rather than random_seed + shard_index) keeps the shards of
  neighbouring random seeds from sharing seeds.
  """
  text = ("%d:%d" % (random_seed, shard_index)).encode("ascii")
  return int.from_bytes(hashlib.sha256(text).digest()[:4], "big")


ShardResult = collections.namedtuple(
    "ShardResult",
    ["shard_index", "input_file", "output_file", "num_instances", "skipped",
     "error", "seconds", "input_bytes"])


def process_shard(input_file, output_file, tokenizer, seed,
                  options=DataOptions(), skip_existing=True,
                  num_logged_examples=0):
  """Turns one input shard into one TFRecord file, atomically.

  The output equals `run_single_process([input_file], [output_file],
  tokenizer, seed, options)`. With `skip_existing`, an existing output is
  taken as complete (outputs only appear once fully written) and skipped.
  Returns the number of instances written, or None if skipped.
  """
  if skip_existing and tf.io.gfile.exists(output_file):
    return None
  rng = random.Random(seed)
  np_rng = np.random.RandomState(seed)
  instances = _instances([input_file], tokenizer, options, rng, np_rng)
  return write_instance_to_example_files(
      instances, tokenizer, options.max_seq_length,
      options.max_predictions_per_seq, [output_file],
      do_permutation=options.do_permutation,
      num_logged_examples=num_logged_examples)


def sharded_output_files(input_files, output_dir):
  """`<output_dir>/<input name without extension>.tfrecord` per input."""
  outputs = []
  for path in input_files:
    stem = os.path.splitext(os.path.basename(path))[0]
    outputs.append(os.path.join(output_dir, stem + ".tfrecord"))
  return outputs


# Worker processes build the tokenizer once, in `_init_worker`.
_WORKER_TOKENIZER = None


def _init_worker(tokenizer_args, verbosity):
  global _WORKER_TOKENIZER
  logging.set_verbosity(verbosity)
  _WORKER_TOKENIZER = tokenization.FullTokenizer(**tokenizer_args)


def _run_shard_job(job, tokenizer=None):
  """Runs one shard job; errors are returned, not raised, so others go on."""
  index, input_file, output_file, seed, options, num_logged = job
  tokenizer = tokenizer or _WORKER_TOKENIZER
  start = time.time()
  size = 0
  try:
    size = tf.io.gfile.stat(input_file).length
    count = process_shard(input_file, output_file, tokenizer, seed, options,
                          skip_existing=False, num_logged_examples=num_logged)
    error = None
  except InputError as e:
    count, error = 0, str(e)
  except Exception as e:  # pylint: disable=broad-except
    count = 0
    error = "%s: %s: %s\n%s" % (input_file, type(e).__name__, e,
                                traceback.format_exc())
  return ShardResult(index, input_file, output_file, count, False, error,
                     time.time() - start, size)


def _check_shard_outputs(input_files, output_files, num_tasks, task_index):
  """One distinct output per input, and a valid task split."""
  if len(input_files) != len(output_files):
    raise InputError("per-shard mode needs one output file per input file: "
                     "got %d inputs and %d outputs" %
                     (len(input_files), len(output_files)))
  seen = {}
  for input_file, output_file in zip(input_files, output_files):
    if output_file in seen:
      raise InputError("inputs %s and %s would both write %s" %
                       (seen[output_file], input_file, output_file))
    seen[output_file] = input_file
  if not 0 <= task_index < num_tasks:
    raise ValueError("task_index must be in [0, num_tasks), got %d of %d" %
                     (task_index, num_tasks))


def _shard_jobs(input_files, output_files, random_seed, options, num_tasks,
                task_index, num_logged_examples):
  """(jobs to run, results of shards skipped because their output exists)
  for this task's shards."""
  skipped = []
  jobs = []
  for index, (input_file, output_file) in enumerate(
      zip(input_files, output_files)):
    if index % num_tasks != task_index:
      continue
    if tf.io.gfile.exists(output_file):
      skipped.append(ShardResult(index, input_file, output_file, None, True,
                                 None, 0.0, 0))
      continue
    jobs.append((index, input_file, output_file,
                 shard_seed(random_seed, index), options,
                 num_logged_examples if index == 0 else 0))
  return jobs, skipped


@contextlib.contextmanager
def _shard_outcomes(jobs, tokenizer_args, num_workers):
  """Yields an iterator of the jobs' ShardResults, in completion order: in
  this process for one worker, else from a pool that is closed after."""
  num_workers = max(1, min(num_workers, len(jobs)))
  if num_workers == 1:
    tokenizer = tokenization.FullTokenizer(**tokenizer_args)
    yield (_run_shard_job(job, tokenizer) for job in jobs)
    return
  # Spawned, not forked: forking a process that has started TensorFlow's
  # threads can deadlock.
  context = multiprocessing.get_context("spawn")
  pool = context.Pool(num_workers, initializer=_init_worker,
                      initargs=(tokenizer_args, logging.get_verbosity()))
  try:
    yield pool.imap_unordered(_run_shard_job, jobs)
  except BaseException:
    pool.terminate()
    raise
  finally:
    pool.close()
    pool.join()


class _ShardProgress(object):
  """Logs each finished shard with totals, rates and an ETA by input bytes."""

  def __init__(self, jobs):
    self.num_jobs = len(jobs)
    self.total_bytes = sum(tf.io.gfile.stat(job[1]).length for job in jobs)
    self.start = time.time()
    self.done = 0
    self.done_bytes = 0
    self.num_instances = 0
    self.num_failed = 0

  def add(self, result):
    self.done += 1
    self.done_bytes += result.input_bytes
    self.num_instances += result.num_instances
    if result.error:
      self.num_failed += 1
      logging.error("shard %d failed: %s", result.shard_index, result.error)
    elapsed = max(time.time() - self.start, 1e-9)
    byte_rate = self.done_bytes / elapsed
    eta = ((self.total_bytes - self.done_bytes) / byte_rate
           if byte_rate else 0.0)
    logging.info(
        "shard %d done (%s, %d instances, %.1fs); %d/%d shards, %d failed, "
        "%d instances, %.1f instances/s, %.2f MB/s of input, ETA %s",
        result.shard_index, result.output_file, result.num_instances,
        result.seconds, self.done, self.num_jobs, self.num_failed,
        self.num_instances, self.num_instances / elapsed, byte_rate / 1e6,
        estimator_utils.format_seconds(eta))


def run_sharded(input_files, output_files, tokenizer_args, random_seed,
                options=DataOptions(), num_workers=1, num_tasks=1,
                task_index=0, num_logged_examples=20):
  """Per-shard mode: shard i of `input_files` -> `output_files[i]`.

  Args:
    input_files: the full, ordered list of input shards; a shard's index in
      it determines its seed, `shard_seed(random_seed, index)`.
    output_files: one output path per input shard.
    tokenizer_args: kwargs of `tokenization.FullTokenizer` (vocab_file,
      do_lower_case, spm_model_file, corrected_digit_comma); each worker
      builds its own.
    random_seed: the run's seed.
    options: a `DataOptions`.
    num_workers: worker processes; 1 runs the shards in this process.
    num_tasks, task_index: this process handles the shards whose index is
      task_index modulo num_tasks, so that several machines can split one
      list of shards without changing any shard's seed.
    num_logged_examples: examples logged from shard 0.

  Returns:
    A list of `ShardResult`, ordered by shard index. Shards whose output
    exists are skipped; a shard that fails has `error` set, leaves no output
    and does not stop the others.
  """
  _check_shard_outputs(input_files, output_files, num_tasks, task_index)
  jobs, results = _shard_jobs(input_files, output_files, random_seed, options,
                              num_tasks, task_index, num_logged_examples)
  logging.info("%d shards for this task: %d to process, %d already done",
               len(jobs) + len(results), len(jobs), len(results))
  if not jobs:
    return results
  progress = _ShardProgress(jobs)
  with _shard_outcomes(jobs, tokenizer_args, num_workers) as outcomes:
    for result in outcomes:
      results.append(result)
      progress.add(result)
  return sorted(results, key=lambda r: r.shard_index)


# ---------------------------------------------------------------------------
# Flags and the command: create_pretraining_data.py and its Beam form
# (bio/beam/create_pretraining_data.py) share these.


def define_data_flags(flag_values=flags.FLAGS):
  """Input/output, tokenizer, seed and every `DataOptions` flag, under
  upstream's names with upstream's defaults (but --dupe_factor 5)."""
  kw = {"flag_values": flag_values}
  defaults = DataOptions()
  flags.DEFINE_string(
      "input_file", None,
      "Input raw text file (or comma-separated list of files). Globs are "
      "expanded; each glob's matches are sorted.", **kw)
  flags.DEFINE_string(
      "output_file", None,
      "Output TF example file (or comma-separated list of files). In "
      "per-shard mode: one per input file, in the same order (or use "
      "--output_dir).", **kw)
  flags.DEFINE_string(
      "output_dir", None,
      "Per-shard mode: write <output_dir>/<input name minus extension>"
      ".tfrecord for each input instead of listing --output_file.", **kw)
  common_flags.define_tokenizer_flags(flag_values)
  common_flags.define_max_seq_length_flag(
      defaults.max_seq_length, "Maximum sequence length.", flag_values)
  flags.DEFINE_integer("random_seed", 12345,
                       "Random seed for data generation (per-shard mode: "
                       "shard i uses shard_seed(random_seed, i)).", **kw)
  _define_masking_flags(defaults, kw)


def _define_masking_flags(defaults, kw):
  flags.DEFINE_bool(
      "do_whole_word_mask", defaults.do_whole_word_mask,
      "Whether to use whole word masking rather than per-WordPiece "
      "masking.", **kw)
  flags.DEFINE_bool("do_permutation", defaults.do_permutation,
                    "Whether to do the permutation training.", **kw)
  flags.DEFINE_bool(
      "favor_shorter_ngram", defaults.favor_shorter_ngram,
      "Whether to set higher probabilities for sampling shorter ngrams.",
      **kw)
  flags.DEFINE_bool(
      "random_next_sentence", defaults.random_next_sentence,
      "Whether to use the sentence that's right before the current sentence "
      "as the negative sample for next sentence prection, rather than using "
      "sentences from other random documents.", **kw)
  flags.DEFINE_integer("ngram", defaults.ngram,
                       "Maximum number of ngrams to mask.", **kw)
  flags.DEFINE_integer(
      "max_predictions_per_seq", defaults.max_predictions_per_seq,
      "Maximum number of masked LM predictions per sequence.", **kw)
  flags.DEFINE_integer(
      "dupe_factor", defaults.dupe_factor,
      "Number of times to duplicate the input data (with different masks).",
      **kw)
  flags.DEFINE_float("masked_lm_prob", defaults.masked_lm_prob,
                     "Masked LM probability.", **kw)
  flags.DEFINE_float(
      "short_seq_prob", defaults.short_seq_prob,
      "Probability of creating sequences which are shorter than the "
      "maximum length.", **kw)


def options_from_flags(flag_values=flags.FLAGS):
  """The `DataOptions` of flags defined by `define_data_flags`."""
  return DataOptions(**{name: flag_values[name].value
                        for name in DataOptions._fields})


def output_files_of(input_files, output_file, output_dir):
  """--output_dir's one file per input, else the --output_file list."""
  if output_dir:
    return sharded_output_files(input_files, output_dir)
  return [part.strip() for part in (output_file or "").split(",")
          if part.strip()]


@dataclasses.dataclass(frozen=True)
class CommandOptions:
  """Everything create_pretraining_data.py does, from its flags."""
  input_file: str
  output_file: Optional[str] = None
  output_dir: Optional[str] = None
  tokenizer: common_flags.TokenizerOptions = common_flags.TokenizerOptions()
  data: DataOptions = DataOptions()
  random_seed: int = 12345
  input_file_mode: str = "r"
  # 0: upstream's single-process mode; N >= 1: per-shard mode.
  num_workers: int = 0
  num_tasks: int = 1
  task_index: int = 0
  albert_config_file: Optional[str] = None

  @property
  def per_shard(self):
    return self.num_workers >= 1

  @classmethod
  def from_flags(cls, flag_values=flags.FLAGS):
    """From the flags of create_pretraining_data.py; --parallel means one
    worker per CPU."""
    num_workers = flag_values.num_workers
    if flag_values.parallel and num_workers == 0:
      num_workers = os.cpu_count() or 1
    return cls(
        input_file=flag_values.input_file,
        output_file=flag_values.output_file,
        output_dir=flag_values.output_dir,
        tokenizer=common_flags.TokenizerOptions.from_flags(flag_values),
        data=options_from_flags(flag_values),
        random_seed=flag_values.random_seed,
        input_file_mode=flag_values.input_file_mode,
        num_workers=num_workers, num_tasks=flag_values.num_tasks,
        task_index=flag_values.task_index,
        albert_config_file=flag_values.albert_config_file)


def check_command(command):
  """Raises InputError for contradictory or missing flags."""
  if not command.tokenizer.vocab_file and not command.tokenizer.spm_model_file:
    raise InputError("Pass --spm_model_file (or --vocab_file).")
  if command.input_file_mode not in ("r", "rb"):
    raise InputError("--input_file_mode must be 'r' or 'rb', got %r" %
                     command.input_file_mode)
  if command.num_workers < 0:
    raise InputError("--num_workers must be >= 0, got %d" %
                     command.num_workers)
  if command.per_shard:
    if bool(command.output_file) == bool(command.output_dir):
      raise InputError("Per-shard mode needs exactly one of --output_file "
                       "(one per input) and --output_dir.")
  elif not command.output_file:
    raise InputError("Pass --output_file.")
  elif (command.output_dir or command.num_tasks != 1 or
        command.task_index != 0):
    raise InputError("--output_dir, --num_tasks and --task_index need "
                     "per-shard mode (--num_workers >= 1).")
  try:
    validate_options(command.data)
  except ValueError as e:
    raise InputError(str(e))


def check_config(config_file, max_seq_length, tokenizer):
  """The data must fit the model the config describes."""
  if not config_file:
    return
  config = modeling.AlbertConfig.from_json_file(config_file)
  modeling.check_seq_length(max_seq_length, config, config_file, InputError)
  if len(tokenizer.vocab) > config.vocab_size:
    raise InputError(
        "the vocabulary has %d pieces but vocab_size is %d in %s" % (
            len(tokenizer.vocab), config.vocab_size, config_file))


def _run_sharded_command(command, input_files):
  """Per-shard mode; returns the exit status (1 if a shard failed)."""
  # A file named by two patterns is processed once.
  input_files = list(dict.fromkeys(input_files))
  output_files = output_files_of(input_files, command.output_file,
                                 command.output_dir)
  results = run_sharded(
      input_files, output_files, command.tokenizer.as_kwargs(),
      command.random_seed, command.data, num_workers=command.num_workers,
      num_tasks=command.num_tasks, task_index=command.task_index)
  failed = [r for r in results if r.error]
  skipped = [r for r in results if r.skipped]
  logging.info("Done: %d instances in %d new files; %d files skipped "
               "(already complete); %d failed",
               sum(r.num_instances or 0 for r in results),
               len(results) - len(failed) - len(skipped), len(skipped),
               len(failed))
  for result in failed:
    logging.error("FAILED shard %d: %s", result.shard_index, result.error)
  return 1 if failed else 0


def run(command):
  """Runs create_pretraining_data.py; returns the exit status. Raises
  InputError (a ValueError) for bad flags or input."""
  check_command(command)
  tokenizer = tokenization.FullTokenizer(**command.tokenizer.as_kwargs())
  check_config(command.albert_config_file, command.data.max_seq_length,
               tokenizer)
  input_files = expand_input_patterns(command.input_file)
  logging.info("*** Reading from %d input files ***", len(input_files))
  if command.per_shard:
    return _run_sharded_command(command, input_files)
  count = run_single_process(
      input_files, output_files_of(input_files, command.output_file, None),
      tokenizer, command.random_seed, command.data)
  logging.info("Done: %d instances", count)
  return 0
