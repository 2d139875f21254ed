# coding=utf-8
"""Tokenization for ALBERT: SentencePiece, with BERT's WordPiece as fallback.

Port of google-research/albert `tokenization.py` to Python 3 and TF 2.15
(`tf.io.gfile`). Function and class names follow upstream.

In SentencePiece mode `FullTokenizer.tokenize` does not lower-case or strip
accents: as in upstream's `create_pretraining_data.py`, callers run
`preprocess_text(text, lower=do_lower_case)` first.

The digit-comma rule (`encode_pieces`): a piece ending in a digit and a comma
("▁1990," or, inside a word, "1,") is re-encoded without the comma, and the
comma becomes a piece of its own. Upstream meant to drop the word-start
marker "▁" that re-encoding puts in front of digits that continued a word,
but under Python 3 its check compares a str piece with its bytes constant
`SPIECE_UNDERLINE` and never matches, so "e1," split as "▁e" "1," comes out
as "▁e" "▁1" ",". That is what upstream produces under Python 3 (and what
models pretrained with it, BioALBERT's included, saw), so it is the default
here; tests/albert/test_golden.py checks it against upstream's own output.
`corrected_digit_comma=True` (flag --corrected_digit_comma) applies the rule
as intended, as Hugging Face's `AlbertTokenizer` does: "▁e" "1" ",".
"""

import collections
import re
import unicodedata

import sentencepiece as spm
import tensorflow.compat.v1 as tf

# Upstream stores this as UTF-8 bytes; see the module docstring for what that
# does to the digit-comma rule under Python 3.
SPIECE_UNDERLINE = u"\u2581"


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
  """Raises if `do_lower_case` contradicts a known BERT checkpoint's casing."""
  # Casing is not stored with the checkpoint, so guess it from the file name.
  if not init_checkpoint:
    return

  match = re.match("^.*?([A-Za-z0-9_-]+)/bert_model.ckpt", init_checkpoint)
  if match is None:
    return
  model_name = match.group(1)

  lower_models = [
      "uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
      "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12"
  ]
  cased_models = [
      "cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16",
      "multi_cased_L-12_H-768_A-12"
  ]

  if model_name in lower_models and not do_lower_case:
    actual_flag, case_name, opposite_flag = "False", "lowercased", "True"
  elif model_name in cased_models and do_lower_case:
    actual_flag, case_name, opposite_flag = "True", "cased", "False"
  else:
    return
  raise ValueError(
      "You passed in `--do_lower_case=%s` with `--init_checkpoint=%s`. "
      "However, `%s` seems to be a %s model, so you should pass in "
      "`--do_lower_case=%s` so that the fine-tuning matches how the model was "
      "pre-trained. If this error is wrong, please just comment out this "
      "check." % (actual_flag, init_checkpoint, model_name, case_name,
                  opposite_flag))


def preprocess_text(inputs, remove_space=True, lower=False,
                    keep_accents=False):
  """Collapses whitespace, strips accents (NFKD) and optionally lower-cases."""
  outputs = convert_to_unicode(inputs)
  if remove_space:
    outputs = " ".join(outputs.strip().split())

  if not keep_accents:
    outputs = unicodedata.normalize("NFKD", outputs)
    outputs = "".join(c for c in outputs if not unicodedata.combining(c))
  if lower:
    outputs = outputs.lower()
  return outputs


def encode_pieces(sp_model, text, return_unicode=True, sample=False,
                  corrected_digit_comma=False):
  """Splits `text` into SentencePiece pieces (str).

  A piece such as "9," or "▁1990," (digits then a comma) is re-encoded without
  its comma and the comma emitted on its own, so numbers are split the same
  way whether or not a comma follows them.

  Args:
    sp_model: a loaded `sentencepiece.SentencePieceProcessor`.
    text: str (or UTF-8 bytes).
    return_unicode: kept for upstream compatibility; pieces are always str.
    sample: draw a segmentation by subword regularisation instead of the best.
    corrected_digit_comma: False (upstream under Python 3): the re-encoded
      digits always start a word ("▁e" "1," -> "▁e" "▁1" ","). True (Hugging
      Face's `AlbertTokenizer`): digits that continued a word keep doing so
      ("▁e" "1" ",").

  Returns:
    A list of str pieces.
  """
  del return_unicode  # Only meaningful under Python 2.
  text = convert_to_unicode(text)
  if sample:
    pieces = sp_model.SampleEncodeAsPieces(text, 64, 0.1)
  else:
    pieces = sp_model.EncodeAsPieces(text)

  new_pieces = []
  for piece in pieces:
    piece = printable_text(piece)
    if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
      sub_pieces = sp_model.EncodeAsPieces(
          piece[:-1].replace(SPIECE_UNDERLINE, ""))
      # Re-encoding adds a word-start marker; the corrected rule drops it when
      # the original piece continued a word.
      if (corrected_digit_comma and piece[0] != SPIECE_UNDERLINE and
          sub_pieces and sub_pieces[0][0] == SPIECE_UNDERLINE):
        if len(sub_pieces[0]) == 1:
          sub_pieces = sub_pieces[1:]
        else:
          sub_pieces[0] = sub_pieces[0][1:]
      sub_pieces.append(piece[-1])
      new_pieces.extend(sub_pieces)
    else:
      new_pieces.append(piece)
  return new_pieces


def encode_ids(sp_model, text, sample=False, corrected_digit_comma=False):
  """Like `encode_pieces`, but returns the piece ids."""
  pieces = encode_pieces(sp_model, text, return_unicode=False, sample=sample,
                         corrected_digit_comma=corrected_digit_comma)
  return [sp_model.PieceToId(piece) for piece in pieces]


def convert_to_unicode(text):
  """Returns `text` as str, decoding bytes as UTF-8 (dropping bad bytes)."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError("Unsupported string type: %s" % type(text))


def printable_text(text):
  """Returns `text` as a str suitable for printing or logging."""
  # Under Python 3 this is the same conversion as `convert_to_unicode`.
  return convert_to_unicode(text)


def _require_file(path, what):
  if not path:
    raise ValueError("No %s given." % what)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError("%s not found: %s" % (what, path))


def load_vocab(vocab_file):
  """Reads a vocabulary (one token per line; extra columns ignored)."""
  _require_file(vocab_file, "Vocab file")
  vocab = collections.OrderedDict()
  with tf.io.gfile.GFile(vocab_file, "r") as reader:
    while True:
      line = convert_to_unicode(reader.readline())
      if not line:
        break
      # A SentencePiece .vocab line is "piece<TAB>score": keep the piece.
      token = line.strip().split()[0] if line.strip() else " "
      if token not in vocab:
        vocab[token] = len(vocab)
  return vocab


def convert_by_vocab(vocab, items):
  """Maps each item through `vocab` (tokens to ids or ids to tokens)."""
  return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab, tokens):
  return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
  return convert_by_vocab(inv_vocab, ids)


def whitespace_tokenize(text):
  """Strips `text` and splits it on whitespace."""
  text = text.strip()
  if not text:
    return []
  return text.split()


class FullTokenizer(object):
  """End-to-end tokenizer: SentencePiece if a model is given, else WordPiece."""

  def __init__(self, vocab_file, do_lower_case=True, spm_model_file=None,
               corrected_digit_comma=False):
    """Loads the SentencePiece model, or else the WordPiece vocabulary.

    Args:
      vocab_file: a WordPiece vocabulary, used without `spm_model_file`.
      do_lower_case: WordPiece mode only (see the module docstring).
      spm_model_file: a SentencePiece model (local or gs:// path).
      corrected_digit_comma: SentencePiece mode: the digit-comma rule of
        Hugging Face's `AlbertTokenizer` instead of upstream's (see
        `encode_pieces`). Data and model must agree on it.
    """
    self.vocab = None
    self.sp_model = None
    self.corrected_digit_comma = corrected_digit_comma
    if spm_model_file:
      _require_file(spm_model_file, "SentencePiece model file")
      tf.logging.info("loading sentence piece model %s", spm_model_file)
      # Read through gfile so that gs:// paths work too.
      with tf.io.gfile.GFile(spm_model_file, "rb") as f:
        serialized = f.read()
      self.sp_model = spm.SentencePieceProcessor()
      try:
        self.sp_model.LoadFromSerializedProto(serialized)
      except (RuntimeError, OSError) as e:
        raise ValueError("Not a valid SentencePiece model: %s (%s)" %
                         (spm_model_file, e)) from e
      # Upstream also exposes a vocab dict in SentencePiece mode.
      self.vocab = {self.sp_model.IdToPiece(i): i
                    for i in range(self.sp_model.GetPieceSize())}
    else:
      self.vocab = load_vocab(vocab_file)
      self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
      self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
    self.inv_vocab = {v: k for k, v in self.vocab.items()}

  @classmethod
  def from_scratch(cls, vocab_file, do_lower_case, spm_model_file):
    return cls(vocab_file, do_lower_case, spm_model_file)

  def tokenize(self, text):
    if self.sp_model:
      return encode_pieces(self.sp_model, text, return_unicode=False,
                           corrected_digit_comma=self.corrected_digit_comma)
    split_tokens = []
    for token in self.basic_tokenizer.tokenize(text):
      split_tokens.extend(self.wordpiece_tokenizer.tokenize(token))
    return split_tokens

  def convert_tokens_to_ids(self, tokens):
    if self.sp_model:
      # Pieces missing from the model map to the unknown id, as upstream.
      return [self.sp_model.PieceToId(printable_text(token))
              for token in tokens]
    return convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids):
    if self.sp_model:
      return [self.sp_model.IdToPiece(id_) for id_ in ids]
    return convert_by_vocab(self.inv_vocab, ids)


class BasicTokenizer(object):
  """BERT's pre-tokenizer: cleanup, punctuation splitting, lower-casing."""

  def __init__(self, do_lower_case=True):
    self.do_lower_case = do_lower_case

  def tokenize(self, text):
    """Splits `text` into words and punctuation marks."""
    text = convert_to_unicode(text)
    text = self._clean_text(text)
    # CJK ideographs are treated as words of their own (upstream does this for
    # every model, not just Chinese ones).
    text = self._tokenize_chinese_chars(text)

    split_tokens = []
    for token in whitespace_tokenize(text):
      if self.do_lower_case:
        token = self._run_strip_accents(token.lower())
      split_tokens.extend(self._run_split_on_punc(token))
    return whitespace_tokenize(" ".join(split_tokens))

  def _run_strip_accents(self, text):
    """Drops combining marks after NFD decomposition."""
    text = unicodedata.normalize("NFD", text)
    return "".join(c for c in text if unicodedata.category(c) != "Mn")

  def _run_split_on_punc(self, text):
    """Makes every punctuation character a token of its own."""
    output = []
    start_new_word = True
    for char in text:
      if _is_punctuation(char):
        output.append([char])
        start_new_word = True
      else:
        if start_new_word:
          output.append([])
        start_new_word = False
        output[-1].append(char)
    return ["".join(x) for x in output]

  def _tokenize_chinese_chars(self, text):
    """Surrounds each CJK ideograph with spaces."""
    output = []
    for char in text:
      if self._is_chinese_char(ord(char)):
        output.extend([" ", char, " "])
      else:
        output.append(char)
    return "".join(output)

  def _is_chinese_char(self, cp):
    """True for code points in the CJK Unified Ideographs blocks."""
    # Hangul, Hiragana and Katakana are not included: those scripts separate
    # words with spaces.
    return ((0x4E00 <= cp <= 0x9FFF) or
            (0x3400 <= cp <= 0x4DBF) or
            (0x20000 <= cp <= 0x2A6DF) or
            (0x2A700 <= cp <= 0x2B73F) or
            (0x2B740 <= cp <= 0x2B81F) or
            (0x2B820 <= cp <= 0x2CEAF) or
            (0xF900 <= cp <= 0xFAFF) or
            (0x2F800 <= cp <= 0x2FA1F))

  def _clean_text(self, text):
    """Drops NUL, U+FFFD and control characters; maps whitespace to ' '."""
    output = []
    for char in text:
      cp = ord(char)
      if cp == 0 or cp == 0xFFFD or _is_control(char):
        continue
      output.append(" " if _is_whitespace(char) else char)
    return "".join(output)


class WordpieceTokenizer(object):
  """Greedy longest-match-first WordPiece tokenizer."""

  def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=200):
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word

  def tokenize(self, text):
    """Splits already basic-tokenized `text` into word pieces.

    For example "unaffable" gives ["un", "##aff", "##able"]; a word that cannot
    be covered by vocabulary pieces becomes a single `unk_token`.

    Args:
      text: a word, or words separated by whitespace.

    Returns:
      A list of word pieces.
    """
    text = convert_to_unicode(text)
    output_tokens = []
    for token in whitespace_tokenize(text):
      if len(token) > self.max_input_chars_per_word:
        output_tokens.append(self.unk_token)
        continue

      sub_tokens = []
      start = 0
      while start < len(token):
        end = len(token)
        match = None
        while start < end:
          candidate = token[start:end]
          if start > 0:
            candidate = "##" + candidate
          if candidate in self.vocab:
            match = candidate
            break
          end -= 1
        if match is None:
          sub_tokens = None
          break
        sub_tokens.append(match)
        start = end

      if sub_tokens is None:
        output_tokens.append(self.unk_token)
      else:
        output_tokens.extend(sub_tokens)
    return output_tokens


def _is_whitespace(char):
  """True for space, tab, newline, carriage return and Unicode Zs."""
  # \t, \n and \r are control characters, but they separate words.
  if char in (" ", "\t", "\n", "\r"):
    return True
  return unicodedata.category(char) == "Zs"


def _is_control(char):
  """True for Unicode Cc/Cf characters other than tab, newline and CR."""
  if char in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
  """True for Unicode P* characters and every non-alphanumeric ASCII symbol."""
  cp = ord(char)
  # "^", "$", "`" and the like are symbols, not P*, in Unicode; BERT splits
  # them too.
  if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (
      123 <= cp <= 126):
    return True
  return unicodedata.category(char).startswith("P")
