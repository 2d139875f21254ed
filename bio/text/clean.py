"""The BioALBERT paper's per-document cleaning rules for pretraining text.

Naseem et al. (BioALBERT) prepared PubMed and PMC text by, for every
document: removing all blank lines inside it and joining it into one
paragraph, dropping every line shorter than 20 characters, and leaving one
blank line between documents. Here a "line" is one line of the extracted
text (a title, an abstract section, a body paragraph): short lines are
mostly headings, labels and debris from tables, which is what the rule is
there to remove. The blank line between documents is written by
`bio.corpus.shards`; sentence splitting comes after cleaning (`bio.text.sentences`).
"""
import re

MIN_LINE_CHARS = 20

# C0/C1 control characters other than whitespace: never valid text, and some
# of them (\x1c-\x1e, \x85) count as line breaks for str.splitlines().
_CONTROL_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_LINE_BREAK_RE = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def normalize_whitespace(text):
  """Collapses every run of whitespace (any Unicode kind) to one space."""
  return " ".join(_CONTROL_RE.sub(" ", text).split())


def split_lines(text):
  """Splits on every kind of line break, as str.splitlines would."""
  return _LINE_BREAK_RE.split(text)


def clean_lines(blocks, min_chars=MIN_LINE_CHARS):
  """The lines of a document that survive the rules, whitespace-normalised.

  Args:
    blocks: a string or an iterable of strings (title, paragraphs, ...); each
      is split into lines.
    min_chars: lines shorter than this (after normalisation) are dropped.

  Returns:
    The kept lines in order; blank lines are gone.
  """
  if isinstance(blocks, str):
    blocks = [blocks]
  kept = []
  for block in blocks:
    for line in split_lines(block):
      line = normalize_whitespace(line)
      if line and len(line) >= min_chars:
        kept.append(line)
  return kept


def clean_document(blocks, min_chars=MIN_LINE_CHARS):
  """The document as one paragraph: kept lines joined by single spaces."""
  return " ".join(clean_lines(blocks, min_chars=min_chars))

