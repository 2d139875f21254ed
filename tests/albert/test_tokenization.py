# coding=utf-8
"""Tests for albert.tokenization and albert.train_spm.

The SentencePiece model is trained once per session on real PubMed abstracts;
the WordPiece expectations are upstream's tokenization_test.py cases.
"""
import gzip
import logging
import os
import re
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET

from absl import flags
import pytest
import sentencepiece as spm

from albert import common_flags
from albert import tokenization
from albert import train_spm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNDERLINE = u"\u2581"


def _pubmed_texts(path):
  """Titles and abstract paragraphs of a PubMed XML file, crudely."""
  with gzip.open(path) as f:
    root = ET.parse(f).getroot()
  return ["".join(node.itertext()) for node in root.iter()
          if node.tag in ("ArticleTitle", "AbstractText")]


@pytest.fixture(scope="session")
def train_texts(pubmed_dir):
  texts = []
  for name in ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz"):
    texts.extend(_pubmed_texts(os.path.join(pubmed_dir, name)))
  assert len(texts) > 600
  return texts


@pytest.fixture(scope="session")
def heldout_texts(pubmed_dir):
  return _pubmed_texts(os.path.join(pubmed_dir, "pubmed26n1334.xml.gz"))


@pytest.fixture(scope="session")
def corpus_file(train_texts, tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus") / "abstracts.txt"
  path.write_text("\n".join(t.replace("\n", " ") for t in train_texts) + "\n",
                  encoding="utf-8")
  return str(path)


@pytest.fixture(scope="session")
def bio_spm(corpus_file, tmp_path_factory):
  """Path of a 1000-piece model trained through the file-based entry point."""
  prefix = str(tmp_path_factory.mktemp("spm") / "bio1k")
  path = train_spm.train_sentencepiece(
      corpus_file, prefix, vocab_size=1000, extra_args={"minloglevel": 1})
  assert path == prefix + ".model"
  return path


@pytest.fixture(scope="session")
def sp_tokenizer(bio_spm):
  return tokenization.FullTokenizer(None, spm_model_file=bio_spm)


def _write(path, text):
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return str(path)


# --- SentencePiece model trained by train_spm --------------------------------


def test_special_symbol_layout(bio_spm, sp_tokenizer):
  # ALBERT's 30k-clean vocabulary starts with these 13 pieces, in this order
  # (e.g. "." is id 9 in albert_base).
  expected = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", "(", ")", "\"",
              "-", ".", u"\u2013", u"\u00a3", u"\u20ac"]
  sp = sp_tokenizer.sp_model
  assert [sp.IdToPiece(i) for i in range(len(expected))] == expected
  assert sp.GetPieceSize() == 1000
  assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, -1, -1)
  for piece in ("[CLS]", "[SEP]", "[MASK]"):
    assert sp.IsControl(sp.PieceToId(piece))
  assert sp_tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[MASK]"]) == [
      2, 3, 4]
  # Control symbols never come out of the text itself.
  assert "[MASK]" not in sp_tokenizer.tokenize("a [MASK] b")
  # The .vocab file lists the same pieces in id order (load_vocab reads
  # "piece<TAB>score" lines).
  vocab_file = bio_spm[:-len(".model")] + ".vocab"
  assert dict(tokenization.load_vocab(vocab_file)) == sp_tokenizer.vocab
  assert len(sp_tokenizer.vocab) == 1000
  assert all(sp_tokenizer.inv_vocab[i] == sp.IdToPiece(i) for i in range(1000))


def test_training_text_was_lowercased_and_accent_stripped(sp_tokenizer):
  specials = {"<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"}
  pieces = [p for p in sp_tokenizer.vocab if p not in specials]
  assert pieces and all(p == p.lower() for p in pieces)
  assert not any(unicodedata.combining(c) for p in pieces for c in p)
  assert any(p.startswith(UNDERLINE) for p in pieces)


def test_round_trip_on_heldout_abstracts(sp_tokenizer, heldout_texts):
  sp = sp_tokenizer.sp_model
  n_pieces = n_unk = 0
  for raw in heldout_texts:
    text = tokenization.preprocess_text(raw, lower=True)
    pieces = sp_tokenizer.tokenize(text)
    ids = sp_tokenizer.convert_tokens_to_ids(pieces)
    assert ids == tokenization.encode_ids(sp, text)
    assert pieces == tokenization.encode_pieces(sp, text)
    back = sp_tokenizer.convert_ids_to_tokens(ids)
    for piece, id_, piece_back in zip(pieces, ids, back):
      if piece in sp_tokenizer.vocab:
        assert (id_, piece_back) == (sp_tokenizer.vocab[piece], piece)
      else:  # a character outside the model's coverage
        assert (id_, piece_back) == (1, "<unk>")
    # Pieces cover the (NFKC-normalised) text exactly.
    assert "".join(pieces).replace(UNDERLINE, " ").strip() == (
        unicodedata.normalize("NFKC", text))
    n_pieces += len(pieces)
    n_unk += ids.count(1)
  assert n_pieces > 3000
  assert n_unk / n_pieces < 0.01
  # A 1000-piece vocabulary still keeps frequent words whole.
  assert sp_tokenizer.tokenize("the patients") == [
      UNDERLINE + "the", UNDERLINE + "patients"]


def test_sampled_segmentation_covers_text(sp_tokenizer):
  text = tokenization.preprocess_text(
      "Mutations in the BRCA1 gene increase breast cancer risk.", lower=True)
  best = tokenization.encode_pieces(sp_tokenizer.sp_model, text)
  for _ in range(5):
    sampled = tokenization.encode_pieces(sp_tokenizer.sp_model, text,
                                         sample=True)
    assert "".join(sampled) == "".join(best)


def test_spm_tokenize_does_not_lowercase(sp_tokenizer):
  # As upstream: callers lower-case with preprocess_text first.
  pieces = sp_tokenizer.tokenize(u"Héllo")
  assert "".join(pieces) == UNDERLINE + u"Héllo"
  assert "".join(sp_tokenizer.tokenize(
      tokenization.preprocess_text(u"Héllo", lower=True))) == (
          UNDERLINE + "hello")


@pytest.fixture(scope="module")
def digit_comma_model(tmp_path_factory, train_texts):
  # User-defined symbols make the pieces deterministic: "1990," "9," and
  # "▁12," are pieces that end in digit+comma; "▁" "1990", "▁9" and "▁12" are
  # what their digits re-encode to.
  symbols = train_spm.USER_DEFINED_SYMBOLS + [
      "1990,", "1990", "9,", "\u25819", "\u258112,", "\u258112"]
  texts = ["in 1990, rates rose", "a9, b 12, c"] * 20 + train_texts[:40]
  return train_spm.train_sentencepiece_from_texts(
      texts, str(tmp_path_factory.mktemp("dc") / "dc"), vocab_size=300,
      extra_args={"user_defined_symbols": symbols})


@pytest.fixture(scope="module")
def digit_comma_sp(digit_comma_model):
  return spm.SentencePieceProcessor(model_file=digit_comma_model)


@pytest.mark.parametrize("text,replaced,upstream,corrected", [
    # Inside a word, upstream (under Python 3) keeps the word-start marker
    # that re-encoding adds; the corrected rule drops a lone "▁" ...
    ("in 1990, rates", "1990,", [UNDERLINE, "1990", ","], ["1990", ","]),
    ("x1990, y", "1990,", [UNDERLINE, "1990", ","], ["1990", ","]),
    # ... or strips it from the front of the first piece.
    ("a9, b", "9,", [UNDERLINE + "9", ","], ["9", ","]),
    # At a word start the marker stays either way.
    ("b 12, c", UNDERLINE + "12,", [UNDERLINE + "12", ","],
     [UNDERLINE + "12", ","]),
    ("12,000 cells", UNDERLINE + "12,", [UNDERLINE + "12", ","],
     [UNDERLINE + "12", ","]),
])
def test_digit_comma_rule(digit_comma_sp, text, replaced, upstream,
                          corrected):
  raw = digit_comma_sp.EncodeAsPieces(text)
  assert replaced in raw  # the rule has something to do
  for replacement, kwargs in ((upstream, {}),
                              (corrected, {"corrected_digit_comma": True})):
    expected = []
    for piece in raw:
      expected.extend(replacement if piece == replaced else [piece])
    assert tokenization.encode_pieces(digit_comma_sp, text, **kwargs) == (
        expected)
    ids = tokenization.encode_ids(digit_comma_sp, text, **kwargs)
    assert ids == [digit_comma_sp.PieceToId(p) for p in expected]
    assert 1 not in ids


@pytest.mark.parametrize("corrected", [False, True])
def test_digit_comma_rule_leaves_other_commas(digit_comma_sp, corrected):
  text = "cells, 3 ,4 and x,y"
  assert tokenization.encode_pieces(
      digit_comma_sp, text, corrected_digit_comma=corrected) == (
          digit_comma_sp.EncodeAsPieces(text))


def test_corrected_digit_comma_option_from_flags(digit_comma_model):
  fv = flags.FlagValues()
  common_flags.define_tokenizer_flags(fv)
  text = "a9, b"
  for args, expected in (
      ([], [UNDERLINE + "a", UNDERLINE + "9", ",", UNDERLINE + "b"]),
      (["--corrected_digit_comma"],
       [UNDERLINE + "a", "9", ",", UNDERLINE + "b"])):
    fv.unparse_flags()
    fv(["prog", "--spm_model_file=" + digit_comma_model] + args)
    options = common_flags.TokenizerOptions.from_flags(fv)
    assert options.corrected_digit_comma == bool(args)
    tokenizer = tokenization.FullTokenizer(**options.as_kwargs())
    assert tokenizer.tokenize(text) == expected
  # Positional use (upstream's from_scratch) keeps upstream's rule.
  assert tokenization.FullTokenizer.from_scratch(
      None, True, digit_comma_model).tokenize(text) == [
          UNDERLINE + "a", UNDERLINE + "9", ",", UNDERLINE + "b"]


# --- preprocess_text and helpers ---------------------------------------------


@pytest.mark.parametrize("kwargs,text,expected", [
    ({"lower": True}, u"Héllo", "hello"),
    ({}, u"Héllo", "Hello"),
    ({"keep_accents": True}, u"Héllo", u"Héllo"),
    ({"lower": True}, u"  IL-2\t receptor \n ", "il-2 receptor"),
    ({"remove_space": False}, u" a  b ", u" a  b "),
    # NFKD compatibility mappings: ligature, superscript, micro sign.
    ({}, u"\ufb01ve 10\u00b2 \u00b5M", u"five 102 \u03bcM"),
    ({"lower": True}, u"TNF-\u03b1 Na\u00efve", u"tnf-\u03b1 naive"),
    ({}, b"caf\xc3\xa9", "cafe"),
])
def test_preprocess_text(kwargs, text, expected):
  assert tokenization.preprocess_text(text, **kwargs) == expected


def test_unicode_helpers():
  assert tokenization.convert_to_unicode(b"\xce\xb1-helix") == u"\u03b1-helix"
  assert tokenization.convert_to_unicode(b"ab\xffc") == "abc"
  assert tokenization.printable_text(u"\u03b1") == u"\u03b1"
  assert tokenization.printable_text(b"x") == "x"
  with pytest.raises(ValueError):
    tokenization.convert_to_unicode(3)
  assert tokenization.whitespace_tokenize(" a\tb \n") == ["a", "b"]
  assert tokenization.whitespace_tokenize("  ") == []


def test_validate_case_matches_checkpoint():
  validate = tokenization.validate_case_matches_checkpoint
  validate(True, None)
  validate(True, "gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt")
  validate(False, "gs://b/cased_L-12_H-768_A-12/bert_model.ckpt")
  validate(False, "/models/bioalbert/model.ckpt-1000")
  with pytest.raises(ValueError, match="do_lower_case=True"):
    validate(False, "/m/uncased_L-12_H-768_A-12/bert_model.ckpt")
  with pytest.raises(ValueError, match="do_lower_case=False"):
    validate(True, "/m/cased_L-24_H-1024_A-16/bert_model.ckpt")


# --- WordPiece fallback (upstream's test cases) ------------------------------

WORDPIECE_VOCAB = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa",
                   "un", "runn", "##ing", ","]


def test_full_tokenizer_wordpiece(tmp_path):
  vocab_file = _write(tmp_path / "vocab.txt",
                      "".join(t + "\n" for t in WORDPIECE_VOCAB))
  tokenizer = tokenization.FullTokenizer(vocab_file)
  assert tokenizer.sp_model is None
  tokens = tokenizer.tokenize(u"UNwant\u00E9d,running")
  assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
  assert tokenizer.convert_tokens_to_ids(tokens) == [7, 4, 5, 10, 8, 9]
  assert tokenizer.convert_ids_to_tokens([7, 4, 5, 10, 8, 9]) == tokens
  assert tokenizer.inv_vocab[3] == "want"
  cased = tokenization.FullTokenizer(vocab_file, do_lower_case=False)
  assert cased.tokenize(u"UNwanted running") == ["[UNK]", "runn", "##ing"]
  with pytest.raises(KeyError):
    tokenizer.convert_tokens_to_ids(["nope"])


def test_load_vocab_first_column_blank_and_duplicates(tmp_path):
  vocab_file = _write(tmp_path / "v.txt", "a\t-1.5\nb\n\na\nc 3\n")
  assert list(tokenization.load_vocab(vocab_file).items()) == [
      ("a", 0), ("b", 1), (" ", 2), ("c", 3)]


def test_basic_tokenizer():
  lower = tokenization.BasicTokenizer(do_lower_case=True)
  assert lower.tokenize(u" \tHeLLo!how  \n Are yoU?  ") == [
      "hello", "!", "how", "are", "you", "?"]
  assert lower.tokenize(u"H\u00E9llo") == ["hello"]
  cased = tokenization.BasicTokenizer(do_lower_case=False)
  assert cased.tokenize(u" \tHeLLo!how  \n Are yoU?  ") == [
      "HeLLo", "!", "how", "Are", "yoU", "?"]
  assert cased.tokenize(u"ah\u535A\u63A8zz") == [
      "ah", u"\u535A", u"\u63A8", "zz"]
  # Control characters and U+FFFD vanish; other whitespace splits.
  assert cased.tokenize(u"a\u0005b\ufffdc\u00a0d") == ["abc", "d"]
  assert lower.tokenize(u"IL-2(+)") == ["il", "-", "2", "(", "+", ")"]


def test_wordpiece_tokenizer():
  vocab = {t: i for i, t in enumerate(WORDPIECE_VOCAB[:-1])}
  tokenizer = tokenization.WordpieceTokenizer(vocab=vocab)
  assert tokenizer.tokenize("") == []
  assert tokenizer.tokenize("unwanted running") == [
      "un", "##want", "##ed", "runn", "##ing"]
  assert tokenizer.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]
  short = tokenization.WordpieceTokenizer(vocab=vocab,
                                          max_input_chars_per_word=5)
  assert short.tokenize("want unwanted") == ["want", "[UNK]"]
  assert tokenization.convert_tokens_to_ids(
      vocab, ["un", "##want", "##ed", "runn", "##ing"]) == [7, 4, 5, 8, 9]
  assert tokenization.convert_ids_to_tokens(
      {v: k for k, v in vocab.items()}, [3, 6]) == ["want", "wa"]


def test_character_classes():
  for char in (" ", "\t", "\r", "\n", u"\u00A0"):
    assert tokenization._is_whitespace(char)
  for char in ("A", "-"):
    assert not tokenization._is_whitespace(char)
  assert tokenization._is_control(u"\u0005")
  for char in ("A", " ", "\t", "\r", u"\U0001F4A9"):
    assert not tokenization._is_control(char)
  for char in ("-", "$", "`", ".", u"\u2013"):
    assert tokenization._is_punctuation(char)
  for char in ("A", " ", "7", u"\u03b1"):
    assert not tokenization._is_punctuation(char)


# --- errors ------------------------------------------------------------------


def test_missing_files_name_the_path(tmp_path):
  missing_model = str(tmp_path / "nope" / "30k-clean.model")
  with pytest.raises(FileNotFoundError, match=re.escape(missing_model)):
    tokenization.FullTokenizer(None, spm_model_file=missing_model)
  missing_vocab = str(tmp_path / "vocab.txt")
  with pytest.raises(FileNotFoundError, match=re.escape(missing_vocab)):
    tokenization.FullTokenizer(missing_vocab)
  with pytest.raises(ValueError, match="No Vocab file"):
    tokenization.FullTokenizer(None)
  not_a_model = _write(tmp_path / "bad.model", "just text\n")
  with pytest.raises(ValueError, match=re.escape(not_a_model)):
    tokenization.FullTokenizer(None, spm_model_file=not_a_model)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, train_texts):
  path = tmp_path_factory.mktemp("small") / "small.txt"
  path.write_text("\n".join(train_texts[:60]) + "\n", encoding="utf-8")
  return str(path)


def test_too_large_vocab_is_explained_and_old_output_kept(small_corpus,
                                                          tmp_path):
  prefix = str(tmp_path / "m")
  _write(prefix + ".model", "old")
  with pytest.raises(ValueError, match="too large") as info:
    train_spm.train_sentencepiece(small_corpus, prefix, vocab_size=50000,
                                  extra_args="--minloglevel=1")
  # Nothing half-written: the previous file is intact, no temp dir is left.
  assert sorted(os.listdir(tmp_path)) == ["m.model"]
  with open(prefix + ".model") as f:
    assert f.read() == "old"
  # The suggested size works as is.
  suggested = int(re.search(r"--vocab_size=(\d+)", str(info.value)).group(1))
  assert 1000 < suggested < 50000
  path = train_spm.train_sentencepiece(small_corpus, prefix,
                                       vocab_size=suggested,
                                       extra_args="--minloglevel=1")
  assert spm.SentencePieceProcessor(model_file=path).GetPieceSize() == suggested
  assert sorted(os.listdir(tmp_path)) == ["m.model", "m.vocab"]
  # Or accept a smaller vocabulary with a soft limit.
  soft = train_spm.train_sentencepiece(
      small_corpus, str(tmp_path / "soft"), vocab_size=50000,
      extra_args="--hard_vocab_limit=false --minloglevel=1")
  assert spm.SentencePieceProcessor(model_file=soft).GetPieceSize() < 50000


def test_training_input_errors(tmp_path, small_corpus):
  prefix = str(tmp_path / "out" / "m")
  pattern = str(tmp_path / "missing-*.txt")
  with pytest.raises(FileNotFoundError, match=re.escape(pattern)):
    train_spm.train_sentencepiece([small_corpus, pattern], prefix)
  bad = str(tmp_path / "bad.txt")
  with open(bad, "wb") as f:
    f.write(b"first line\nsecond \xff line\n")
  with pytest.raises(ValueError, match=re.escape(bad) + ":2: not valid UTF-8"):
    train_spm.train_sentencepiece(bad, prefix, vocab_size=50)
  empty = _write(tmp_path / "empty.txt", "\n  \n")
  with pytest.raises(ValueError, match="No text"):
    train_spm.train_sentencepiece(empty, prefix, vocab_size=50)
  with pytest.raises(ValueError, match="too small"):
    train_spm.train_sentencepiece(small_corpus, prefix, vocab_size=20,
                                  extra_args="--minloglevel=1")
  with pytest.raises(ValueError, match="cannot be overridden"):
    train_spm.train_sentencepiece(small_corpus, prefix,
                                  extra_args={"vocab_size": 5})
  with pytest.raises(ValueError, match="--name=value"):
    train_spm.train_sentencepiece(small_corpus, prefix, extra_args="oops")
  assert os.listdir(tmp_path / "out") == []


def test_progress_is_logged(small_corpus, tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(train_spm, "_PROGRESS_SECONDS", 0.0)
  monkeypatch.setattr(train_spm, "_PROGRESS_EVERY_LINES", 20)
  caplog.set_level(logging.INFO, logger="absl")
  train_spm.train_sentencepiece(small_corpus, str(tmp_path / "p"),
                                vocab_size=400, extra_args="--minloglevel=1")
  progress = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("read ")]
  assert progress and progress[0].startswith("read 20 lines")
  percents = [float(re.search(r"([\d.]+)% of input", m).group(1))
              for m in progress]
  assert percents == sorted(percents) and 0 < percents[-1] <= 100
  assert all("ETA" in m for m in progress)


def test_gzip_input_and_cased_training(tmp_path, train_texts):
  path = tmp_path / "part.txt.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("\n".join(train_texts[:60]) + "\n")
  model = train_spm.train_sentencepiece(
      str(tmp_path / "*.gz"), str(tmp_path / "cased"), vocab_size=400,
      do_lower_case=False, extra_args="--minloglevel=1")
  pieces = tokenization.FullTokenizer(None, spm_model_file=model).vocab
  assert any(p != p.lower() for p in pieces if not p.startswith(("<", "[")))


def test_cli_matches_library_and_reloads(corpus_file, bio_spm, sp_tokenizer,
                                         heldout_texts, tmp_path):
  """The CLI, in a fresh process, trains the same model as the library."""
  prefix = str(tmp_path / "cli" / "bio1k")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

  def start(*args):  # both runs at once: each is mostly a start-up
    return subprocess.Popen([sys.executable, "-m", "albert.train_spm", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  def finish(proc):
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

  trained = start("--input=" + corpus_file, "--model_prefix=" + prefix,
                  "--vocab_size=1000", "--extra_args=--minloglevel=1")
  failing = start("--input=" + str(tmp_path / "none*.txt"),
                  "--model_prefix=" + str(tmp_path / "failed" / "bio1k"))
  result = finish(trained)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == prefix + ".model"
  with open(prefix + ".vocab", encoding="utf-8") as f:
    cli_vocab = f.read()
  with open(bio_spm[:-len(".model")] + ".vocab", encoding="utf-8") as f:
    assert cli_vocab == f.read()  # same pieces and scores
  reloaded = tokenization.FullTokenizer(None, spm_model_file=prefix + ".model")
  for raw in heldout_texts[:10]:
    text = tokenization.preprocess_text(raw, lower=True)
    assert reloaded.tokenize(text) == sp_tokenizer.tokenize(text)

  failed = finish(failing)
  assert failed.returncode == 1
  assert "--input pattern %r matches no file" % str(tmp_path / "none*.txt") in (
      failed.stderr)
