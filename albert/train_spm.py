# coding=utf-8
"""Trains an ALBERT-style SentencePiece model.

Uses the `spm_train` settings documented in google-research/albert's README
(unigram model, pad=0, unk=1, no BOS/EOS, control symbols [CLS] [SEP] [MASK],
user-defined symbols ( ) " - . – £ €, character coverage 0.99995, shuffled
sample of at most 10M sentences). Input lines go through
`tokenization.preprocess_text(line, lower=do_lower_case)` first: the same
preprocessing `create_pretraining_data` applies in SentencePiece mode, so the
vocabulary matches the text it will later encode.

Usage:
  python -m albert.train_spm --input=corpus/*.txt --model_prefix=out/bio30k \
      --vocab_size=30000
"""

import gzip
import os
import re
import shutil
import sys
import time

from absl import app
from absl import flags
from absl import logging
import sentencepiece as spm
import tensorflow.compat.v1 as tf

from albert import file_utils
from albert import tokenization

CONTROL_SYMBOLS = ["[CLS]", "[SEP]", "[MASK]"]
USER_DEFINED_SYMBOLS = ["(", ")", "\"", "-", ".", u"\u2013", u"\u00a3",
                        u"\u20ac"]
# Arguments that train_sentencepiece sets itself.
_RESERVED_ARGS = ("input", "model_prefix", "vocab_size", "sentence_iterator")
# Progress is logged at most every _PROGRESS_SECONDS, checked every
# _PROGRESS_EVERY_LINES lines.
_PROGRESS_SECONDS = 30.0
_PROGRESS_EVERY_LINES = 10000


def albert_trainer_args(vocab_size):
  """SentencePieceTrainer keyword arguments of ALBERT's documented command."""
  return {
      "vocab_size": vocab_size,
      "pad_id": 0,
      "unk_id": 1,
      "eos_id": -1,
      "bos_id": -1,
      # Lists: the trainer wrapper CSV-quotes them, which keeps `"` a symbol.
      "control_symbols": list(CONTROL_SYMBOLS),
      "user_defined_symbols": list(USER_DEFINED_SYMBOLS),
      "shuffle_input_sentence": "true",
      "input_sentence_size": 10000000,
      "character_coverage": 0.99995,
      "model_type": "unigram",
  }


def parse_extra_args(extra_args):
  """Turns "--k=v --k2=v2" (str or list) or a dict into a kwargs dict."""
  if not extra_args:
    return {}
  if isinstance(extra_args, dict):
    parsed = dict(extra_args)
  else:
    if isinstance(extra_args, str):
      extra_args = extra_args.split()
    parsed = {}
    for arg in extra_args:
      match = re.match(r"^--?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", arg)
      if not match:
        raise ValueError("Bad SentencePiece argument %r: expected --name=value"
                         % arg)
      parsed[match.group(1)] = match.group(2)
  for key in _RESERVED_ARGS:
    if key in parsed:
      raise ValueError("SentencePiece argument %r cannot be overridden: use "
                       "the function arguments / flags instead." % key)
  return parsed


def expand_input_files(input_files):
  """Expands a comma-separated string or list of paths/globs to sorted paths."""
  return file_utils.expand_globs(input_files, FileNotFoundError, "--input")


class _Corpus(object):
  """Yields preprocessed, non-empty lines; keeps statistics and the error."""

  def __init__(self, do_lower_case, max_sentence_length, total_bytes=None):
    self.do_lower_case = do_lower_case
    self.max_sentence_length = max_sentence_length
    self.total_bytes = total_bytes
    self.num_lines = 0
    self.num_chars = 0
    self.num_too_long = 0
    self.error = None
    self._start = time.time()
    self._last_log = self._start

  def lines(self, sources):
    """`sources`: iterable of (name, iterable of (line_number, raw_line))."""
    try:
      for name, numbered_lines in sources:
        for line_number, raw in numbered_lines:
          if isinstance(raw, bytes):
            try:
              raw = raw.decode("utf-8")
            except UnicodeDecodeError as e:
              raise ValueError("%s:%d: not valid UTF-8 (%s)" %
                               (name, line_number, e)) from e
          text = tokenization.preprocess_text(raw, lower=self.do_lower_case)
          if not text:
            continue
          self.num_lines += 1
          self.num_chars += len(text)
          if len(text.encode("utf-8")) > self.max_sentence_length:
            self.num_too_long += 1
          if self.num_lines % _PROGRESS_EVERY_LINES == 0:
            self._maybe_log()
          yield text
    except Exception as e:  # pylint: disable=broad-except
      # SentencePiece turns iterator errors into RuntimeError; keep the
      # original so that the caller can re-raise it.
      self.error = e
      raise

  def bytes_read(self):
    return None

  def _maybe_log(self):
    now = time.time()
    if now - self._last_log < _PROGRESS_SECONDS:
      return
    self._last_log = now
    elapsed = now - self._start
    message = "read %d lines in %.0fs (%.0f lines/s)" % (
        self.num_lines, elapsed, self.num_lines / max(elapsed, 1e-9))
    done = self.bytes_read()
    if self.total_bytes and done:
      fraction = min(done / self.total_bytes, 1.0)
      message += ", %.1f%% of input, ETA for reading %.0fs" % (
          100.0 * fraction, elapsed * (1.0 - fraction) / max(fraction, 1e-9))
    logging.info(message)


class _FileCorpus(_Corpus):
  """A `_Corpus` over text files (plain or .gz) read through tf.io.gfile."""

  def __init__(self, paths, do_lower_case, max_sentence_length):
    super(_FileCorpus, self).__init__(
        do_lower_case, max_sentence_length,
        total_bytes=sum(tf.io.gfile.stat(p).length for p in paths))
    self.paths = paths
    self._done_bytes = 0
    self._raw = None

  def bytes_read(self):
    if self._raw is None:
      return self._done_bytes
    return self._done_bytes + self._raw.tell()

  def _numbered_lines(self, path):
    with tf.io.gfile.GFile(path, "rb") as raw:
      self._raw = raw
      stream = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(
          ".gz") else raw
      try:
        for line_number, line in enumerate(stream, 1):
          yield line_number, line
      except (OSError, EOFError) as e:
        raise ValueError("%s: cannot read (%s)" % (path, e)) from e
      self._done_bytes += tf.io.gfile.stat(path).length
      self._raw = None

  def __iter__(self):
    return self.lines((p, self._numbered_lines(p)) for p in self.paths)


def _check_output_prefix(model_prefix):
  if not model_prefix:
    raise ValueError("No model_prefix given.")
  if "://" in model_prefix:
    raise ValueError("model_prefix must be a local path: %s" % model_prefix)
  out_dir = os.path.dirname(os.path.abspath(model_prefix))
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise ValueError("--model_prefix %s: cannot create directory %s (%s)"
                     % (model_prefix, out_dir, e.strerror or e)) from e
  if not os.access(out_dir, os.W_OK | os.X_OK):
    raise ValueError("--model_prefix %s: directory %s is not writable"
                     % (model_prefix, out_dir))
  return out_dir


def _explain_trainer_error(error, vocab_size, description):
  """A ValueError with advice for SentencePiece's vocabulary size checks."""
  message = str(error)
  too_high = re.search(r"Vocabulary size too high \((\d+)\).*?<= (\d+)",
                       message)
  if too_high:
    return ValueError(
        "vocab_size=%d is too large for %s: SentencePiece can build at most "
        "%s pieces from this text. Use --vocab_size=%s or smaller, or add more "
        "text (or pass extra args --hard_vocab_limit=false to accept a smaller "
        "vocabulary)." % (vocab_size, description, too_high.group(2),
                          too_high.group(2)))
  too_low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
  if too_low:
    return ValueError(
        "vocab_size=%d is too small for %s: the text needs %s pieces for its "
        "characters and special symbols alone. Use a larger --vocab_size (or a "
        "lower --character_coverage extra arg)." % (
            vocab_size, description, too_low.group(2)))
  return RuntimeError("SentencePiece training failed on %s: %s" %
                      (description, message))


def _train(corpus, description, model_prefix, vocab_size, extra_args):
  """Trains from `corpus` into a temp dir and renames the outputs in place."""
  if not isinstance(vocab_size, int) or vocab_size <= 0:
    raise ValueError("vocab_size must be a positive integer, got %r" %
                     (vocab_size,))
  out_dir = _check_output_prefix(model_prefix)
  kwargs = albert_trainer_args(vocab_size)
  kwargs.update(extra_args)

  tmp_dir = file_utils.scratch_dir(
      ".%s.tmp-" % os.path.basename(model_prefix), out_dir)
  try:
    tmp_prefix = os.path.join(tmp_dir, "spm")
    start = time.time()
    logging.info("Training a %d-piece SentencePiece model on %s", vocab_size,
                 description)
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=iter(corpus), model_prefix=tmp_prefix, **kwargs)
    except RuntimeError as e:
      if corpus.error is not None:
        raise corpus.error
      if corpus.num_lines == 0:
        raise ValueError("No text to train on in %s" % description) from e
      raise _explain_trainer_error(e, vocab_size, description) from e
    if corpus.num_too_long:
      logging.warning(
          "%d of %d lines are longer than max_sentence_length=%s bytes and "
          "were skipped by SentencePiece; give it one sentence per line.",
          corpus.num_too_long, corpus.num_lines,
          corpus.max_sentence_length)
    # The .model goes last: once it exists, its .vocab is complete too.
    os.replace(tmp_prefix + ".vocab", model_prefix + ".vocab")
    os.replace(tmp_prefix + ".model", model_prefix + ".model")
    logging.info("Wrote %s.model and .vocab (%d lines, %d chars) in %.1fs",
                 model_prefix, corpus.num_lines, corpus.num_chars,
                 time.time() - start)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return model_prefix + ".model"


def train_sentencepiece(input_files, model_prefix, vocab_size=30000,
                        extra_args=None, do_lower_case=True):
  """Trains a SentencePiece model with ALBERT's settings.

  Args:
    input_files: a comma-separated string or a list of paths or globs of text
      files (one sentence per line; blank lines ignored; `.gz` allowed).
    model_prefix: local output prefix; writes `<prefix>.model` and
      `<prefix>.vocab`, replacing them only once training has succeeded.
    vocab_size: number of pieces, special symbols included.
    extra_args: more SentencePieceTrainer arguments overriding the defaults,
      as a dict or "--name=value" strings (e.g. "--hard_vocab_limit=false").
    do_lower_case: lower-case the text before training; use the same value
      for create_pretraining_data and fine-tuning.

  Returns:
    The path of the written `.model` file.

  Raises:
    FileNotFoundError: an input pattern matches no file.
    ValueError: bad input text, no text, or a vocab_size the text cannot
      support (the message suggests a usable size).
  """
  paths = expand_input_files(input_files)
  extra = parse_extra_args(extra_args)
  corpus = _FileCorpus(paths, do_lower_case,
                       int(extra.get("max_sentence_length", 4192)))
  description = "%d file(s) (%s%s)" % (
      len(paths), paths[0], ", ..." if len(paths) > 1 else "")
  return _train(corpus, description, model_prefix, vocab_size, extra)


def _split_texts(texts):
  for index, text in enumerate(texts):
    lines = tokenization.convert_to_unicode(text).splitlines()
    yield "<text %d>" % index, enumerate(lines, 1)


class _TextCorpus(_Corpus):
  """A `_Corpus` over in-memory strings (each may hold several lines)."""

  def __init__(self, texts, do_lower_case, max_sentence_length):
    super(_TextCorpus, self).__init__(do_lower_case, max_sentence_length)
    self.texts = texts

  def __iter__(self):
    return self.lines(_split_texts(self.texts))


def train_sentencepiece_from_texts(texts, model_prefix, vocab_size=1000,
                                   extra_args=None, do_lower_case=True):
  """Like `train_sentencepiece`, on in-memory strings (one or more lines each).

  Meant for tests and demos, e.g. a session-scoped fixture training a small
  model on a few hundred abstracts. SentencePiece's own INFO logging is off
  unless `extra_args` sets `minloglevel`.
  """
  extra = {"minloglevel": 1}
  extra.update(parse_extra_args(extra_args))
  corpus = _TextCorpus(list(texts), do_lower_case,
                       int(extra.get("max_sentence_length", 4192)))
  return _train(corpus, "%d text(s)" % len(corpus.texts), model_prefix,
                vocab_size, extra)


def define_flags():
  """Defines the CLI flags (only when run as a script, to avoid clashes)."""
  flags.DEFINE_string(
      "input", None,
      "Comma-separated globs of text files, one sentence per line.")
  flags.DEFINE_string(
      "model_prefix", None,
      "Output prefix: writes <prefix>.model and <prefix>.vocab.")
  flags.DEFINE_integer("vocab_size", 30000, "Number of pieces.")
  flags.DEFINE_bool(
      "do_lower_case", True,
      "Lower-case the text first; must match create_pretraining_data.")
  flags.DEFINE_string(
      "extra_args", None,
      "More SentencePiece trainer options, e.g. "
      "\"--hard_vocab_limit=false --num_threads=8\".")
  flags.mark_flags_as_required(["input", "model_prefix"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Unexpected arguments: %s" % " ".join(argv[1:]))
  flag_values = flags.FLAGS
  try:
    path = train_sentencepiece(
        flag_values.input, flag_values.model_prefix,
        vocab_size=flag_values.vocab_size,
        extra_args=flag_values.extra_args,
        do_lower_case=flag_values.do_lower_case)
  except (ValueError, FileNotFoundError) as e:
    print("error: %s" % e, file=sys.stderr)
    sys.exit(1)
  print(path)


if __name__ == "__main__":
  define_flags()
  app.run(main)
