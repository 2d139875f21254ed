"""One sentence per line for biomedical text.

The boundaries come from Bling Fire (`blingfire.text_to_sentences`, MIT,
Microsoft): on our PubMed/PMC sample it made the fewest obvious errors of
pysbd, syntok, segtok, sentencex and Bling Fire, and it is by far the fastest
(figures in README). Three guards run on its output:

- a boundary is kept only where the text has whitespace, and the sentences
  are cut from our own text, so no character is ever added, lost or changed;
- a sentence may not end with one of `PROTECTED_ABBREVIATIONS` (e.g., i.e.,
  et al., Fig. ...): such a boundary is removed. This is deliberate even for
  "... et al." at a true sentence end: an occasional long line costs less
  in pretraining than cutting "Smith et al. (2001) showed" in two;
- a short abbreviation ("E.", "sp.", "spp.") followed by a lower-case word
  ("E. coli", "Tuber spp. are") is not a boundary, nor is any position
  followed by `,;:)]`.

One boundary is added: after a number and a unit ("50 min. Detection",
"0.5 ug/ml. Cells"), which Bling Fire reads as an abbreviation.
"""
import itertools
import re

try:
  import blingfire
except OSError as e:  # the wheel ships native code for x86-64 only
  raise ImportError(
      "blingfire is installed but its native library does not load on this "
      "platform (%s); bio.text.sentences needs it" % e) from e

# Never at the end of a line. Matched case-insensitively, as a whole word.
PROTECTED_ABBREVIATIONS = (
    "e.g.", "i.e.", "et al.", "fig.", "figs.", "cf.", "vs.", "viz.",
    "approx.", "eq.", "eqs.", "ref.", "refs.", "suppl.", "resp.", "sect.",
)

_PROTECTED_RE = re.compile(
    r"(?:^|[\s(\[/-])(?:%s)$" % "|".join(
        re.escape(a) for a in PROTECTED_ABBREVIATIONS), re.IGNORECASE)
# A genus initial or a taxonomic/short abbreviation: a boundary after it
# stands only if the next sentence does not start in lower case.
_SHORT_ABBREV_RE = re.compile(
    r"(?:^|[\s(\[])(?:[A-Z][a-z]?|sp|spp|subsp|ssp|nov|var|gen|cv|comb|"
    r"emend|ord|fam|conc|ca|n)\.$")
_NEVER_STARTS_RE = re.compile(r"^[,;:)\]}]")

_UNITS = (
    "min", "h", "hr", "hrs", "s", "sec", "ms", "d", "wk", "wks", "mo", "yr",
    "yrs", "ml", "mL", "l", "L", "ul", "uL", "\u00b5l", "\u00b5L", "g", "mg",
    "ug", "\u00b5g", "ng", "pg", "kg", "mM", "uM", "\u00b5M", "nM", "pM",
    "mol", "mmol", "umol", "\u00b5mol", "nmol", "cm", "mm", "um",
    "\u00b5m", "nm", "km", "Da", "kDa", "bp", "kb", "Mb", "U", "IU", "rpm",
    "Gy", "mGy", "Hz", "kHz", "V", "mV", "\u00b0C", "K", "%")
_UNIT_TOKEN_RE = re.compile(
    r"(?:\d+(?:[.,]\d+)?)?(?:%s)(?:/(?:%s))*\." % (
        "|".join(re.escape(u) for u in _UNITS),
        "|".join(re.escape(u) for u in _UNITS)))
_NUMBER_RE = re.compile(r"[-+\u2212]?\d+(?:[.,]\d+)*")
_CAPITALISED_RE = re.compile(r"[A-Z][a-z]")


def _blingfire_ends(tokens, text):
  """Token indices after which Bling Fire puts a boundary (whitespace only)."""
  # Cumulative non-whitespace length at the end of each token: a Bling Fire
  # sentence whose non-whitespace length is not one of these ends inside a
  # token and is glued to the next one.
  end_of = {total: i for i, total in enumerate(
      itertools.accumulate(len(tok) for tok in tokens))}
  ends = []
  total = 0
  for sentence in blingfire.text_to_sentences(text).split("\n"):
    total += len("".join(sentence.split()))
    if total in end_of:
      ends.append(end_of[total])
  if total != len(text) - text.count(" "):
    # Bling Fire failed or changed the text; keep the paragraph whole.
    return []
  return ends


def _is_unit_end(tokens, i):
  tok = tokens[i]
  if tok[-1] != "." or not _UNIT_TOKEN_RE.fullmatch(tok):
    return False
  if not tok[0].isdigit() and (i == 0 or not _NUMBER_RE.fullmatch(
      tokens[i - 1])):
    return False
  return i + 1 < len(tokens) and bool(_CAPITALISED_RE.match(tokens[i + 1]))


def _keep_boundary(left, right):
  """Whether a boundary between sentence texts `left` and `right` stands."""
  if _NEVER_STARTS_RE.match(right):
    return False
  if not left.endswith("."):
    return True
  # Every pattern is shorter than the tail, so the tail's start is never
  # mistaken for a word boundary unless it is the sentence's start.
  tail = left[-16:]
  if _PROTECTED_RE.search(tail):
    return False
  if right[0].islower() and _SHORT_ABBREV_RE.search(tail):
    return False
  return True


def split_sentences(text):
  """Splits one paragraph into sentences (whitespace-normalised strings).

  " ".join(split_sentences(t)) == " ".join(t.split()) for every input.
  """
  tokens = text.split()
  if not tokens:
    return []
  text = " ".join(tokens)
  ends = set(_blingfire_ends(tokens, text))
  for i in range(len(tokens) - 1):
    if i not in ends and _is_unit_end(tokens, i):
      ends.add(i)
  ends.discard(len(tokens) - 1)
  sentences = []
  start = 0
  pending = None
  for end in sorted(ends) + [len(tokens) - 1]:
    piece = " ".join(tokens[start:end + 1])
    start = end + 1
    if pending is None:
      pending = piece
    elif _keep_boundary(pending, piece):
      sentences.append(pending)
      pending = piece
    else:
      pending = pending + " " + piece
  sentences.append(pending)
  return sentences


def split_lines(lines):
  """Sentences of several lines; a line break is always a boundary."""
  sentences = []
  for line in lines:
    sentences.extend(split_sentences(line))
  return sentences
