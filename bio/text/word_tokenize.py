"""Word tokenization with character offsets, in the style of the BioNER data.

The token-per-line corpora used for BioNER (the MTL-Bioinformatics-2016 and
BioBERT copies of NCBI-disease, BC5CDR, BC2GM, LINNAEUS, Species-800, BC4CHEMD)
keep runs of letters and digits together and make every other visible
character a token of its own: "BRCA1-associated" -> "BRCA1", "-",
"associated"; "0.5" -> "0", ".", "5"; "child's" -> "child", "'", "s".
This module reproduces that so raw text (the CHEMDNER abstracts, or text to
tag) is tokenized the way the models were trained.

Offsets are Python string indices, i.e. Unicode code points, and always
satisfy `text[start:end] == token`.
"""
import re
import sys
import unicodedata


def _category_classes(groups):
  """Regex character-class bodies, one per group of Unicode categories.

  One pass over all code points (~0.2 s at import) instead of one per group.
  """
  group_of = {cat: i for i, cats in enumerate(groups) for cat in cats}
  ranges = [[] for _ in groups]
  current, start = None, 0
  for cp in range(sys.maxunicode + 2):
    group = (group_of.get(unicodedata.category(chr(cp)))
             if cp <= sys.maxunicode else None)
    if group != current:
      if current is not None:
        ranges[current].append((start, cp - 1))
      current, start = group, cp
  return ["".join("%s-%s" % (re.escape(chr(a)), re.escape(chr(b)))
                  for a, b in group_ranges) for group_ranges in ranges]


# A word is a run of letters/digits (not "_", which the corpora split off);
# combining marks stay with the letter they decorate. Any other visible
# character is a token by itself. Whitespace (incl. NBSP, thin space) and
# invisible control/format characters (zero-width space, BOM) only separate.
_MARKS, _INVISIBLE = _category_classes((("Mn", "Mc", "Me"), ("Cc", "Cf")))
_TOKEN_RE = re.compile(
    r"(?:[^\W_]|[%s])+|[^\s%s]" % (_MARKS, _INVISIBLE))


def tokenize_with_offsets(text):
  """Splits `text` into [(token, start, end), ...] with code-point offsets."""
  return [(m.group(0), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def tokenize(text):
  """The tokens of `text` without offsets."""
  return [m.group(0) for m in _TOKEN_RE.finditer(text)]


def split_at_boundaries(tokens, boundaries):
  """Splits offset tokens at every boundary that falls strictly inside one.

  Used to make annotated spans (whose edges may fall inside a run of letters,
  e.g. "aflatoxin" in "aflatoxins") start and end on token edges.

  Args:
    tokens: [(token, start, end)] sorted by start, non-overlapping.
    boundaries: iterable of character offsets.

  Returns:
    A new [(token, start, end)] list; tokens keep their text and offsets.
  """
  cuts = sorted(set(boundaries))
  if not cuts:
    return list(tokens)
  out = []
  ci = 0
  for token, start, end in tokens:
    while ci < len(cuts) and cuts[ci] <= start:
      ci += 1
    pos = start
    cj = ci
    while cj < len(cuts) and cuts[cj] < end:
      cut = cuts[cj]
      out.append((token[pos - start:cut - start], pos, cut))
      pos = cut
      cj += 1
    out.append((token[pos - start:], pos, end))
  return out
