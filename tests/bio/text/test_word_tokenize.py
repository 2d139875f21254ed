"""Tests for bio.text.word_tokenize: tokens with code-point offsets."""
import gzip
import os
import re
import unicodedata

from bio.text import word_tokenize


def test_tokenizer_examples():
  cases = {
      "BRCA1-associated": ["BRCA1", "-", "associated"],
      "0.5 mg/kg": ["0", ".", "5", "mg", "/", "kg"],
      "child's (n=3);": ["child", "'", "s", "(", "n", "=", "3", ")", ";"],
      "α-tocopherol\u00a0+/-": ["α", "-", "tocopherol", "+", "/", "-"],
      "snake_case": ["snake", "_", "case"],
      "H\u2082O\u2009x\u200by": ["H\u2082O", "x", "y"],
      "n\u0303a": ["n\u0303a"],
      "": [],
  }
  for text, want in cases.items():
    assert word_tokenize.tokenize(text) == want, text


def test_tokenizer_offsets_slice_the_text(pubmed_dir):
  with gzip.open(os.path.join(pubmed_dir, "pubmed-sample-0001.xml.gz"),
                 "rt", encoding="utf-8") as f:
    text = re.sub(r"<[^>]+>", " ", f.read())[:300000]
  toks = word_tokenize.tokenize_with_offsets(text)
  assert len(toks) > 20000
  def invisible(c):
    return c.isspace() or unicodedata.category(c) in ("Cc", "Cf")

  prev_end = 0
  for tok, start, end in toks:
    assert text[start:end] == tok
    assert start >= prev_end
    assert all(invisible(c) for c in text[prev_end:start])
    prev_end = end
  assert all(invisible(c) for c in text[prev_end:])
  # Nothing but whitespace (and invisible format characters) is dropped.
  assert "".join(t for t, _, _ in toks) == "".join(
      c for c in text if not invisible(c))


def test_split_at_boundaries():
  toks = word_tokenize.tokenize_with_offsets("aflatoxins and 14C-glucose")
  out = word_tokenize.split_at_boundaries(toks, [9, 0, 15, 17, 26, 100])
  assert out == [("aflatoxin", 0, 9), ("s", 9, 10), ("and", 11, 14),
                 ("14", 15, 17), ("C", 17, 18), ("-", 18, 19),
                 ("glucose", 19, 26)]
  assert word_tokenize.split_at_boundaries(toks, []) == toks

