"""Reader for token-per-line NER files (BioBERT / MTL-Bioinformatics format).

One `token<TAB>label` per line, a blank line between sentences, `-DOCSTART-`
lines ignored. A dataset directory holds train.tsv, devel.tsv (or dev.tsv),
test.tsv and optionally train_dev.tsv.

Labels may be typed (`B-Disease`) or untyped (`B`, `I`, `O`) and in IOB1, IOB2
or IOBES; they are normalised to IOB2 and the repairs are counted and logged.
`collapse_types=True` drops the types (`B-Disease` -> `B`), as BioBERT's
copies of the corpora do, for comparison with published numbers.

A token must not contain whitespace (it is rejected, not escaped): the
outputs of run_ner.py (test_predictions.txt, conlleval's format) separate
columns with spaces.

Malformed input raises NerFormatError with "file:line: problem".
"""
import collections
import os
import re

from absl import logging

from albert import file_utils


Sentence = collections.namedtuple("Sentence", ["tokens", "labels"])

DOCSTART = "-DOCSTART-"
OUTSIDE = "O"

# Split name -> accepted file names, first match wins.
SPLIT_FILES = collections.OrderedDict([
    ("train", ("train.tsv",)),
    ("dev", ("devel.tsv", "dev.tsv")),
    ("test", ("test.tsv",)),
    ("train_dev", ("train_dev.tsv",)),
])
REQUIRED_SPLITS = ("train", "dev", "test")

# O, or a B/I/E/S prefix with an optional "-type".
_LABEL_RE = re.compile(r"O|([BIES])(?:-(\S+))?")


class NerFormatError(ValueError):
  """Malformed NER input; the message is "path:line: problem"."""

  def __init__(self, path, line, problem):
    super().__init__("%s:%d: %s" % (path, line, problem))
    self.path = path
    self.line = line
    self.problem = problem


# A parsed file: sentences plus, per sentence, the line number of each token,
# the IOB2 repairs made (kind -> count) and the number of -DOCSTART- lines.
IobFile = collections.namedtuple(
    "IobFile", ["path", "sentences", "token_lines", "repairs", "num_docstart"])


def parse_label(label):
  """Splits a label into (prefix, type): "B-Disease" -> ("B", "Disease").

  "O" -> ("O", None); untyped "B" -> ("B", None).
  Raises ValueError for anything outside the B/I/O/E/S scheme.
  """
  m = _LABEL_RE.fullmatch(label)
  if not m:
    raise ValueError(
        "label %r is not O or B/I/E/S with an optional -type" % label)
  if label == OUTSIDE:
    return OUTSIDE, None
  return m.group(1), m.group(2)


def _join(prefix, etype):
  return prefix if etype is None else "%s-%s" % (prefix, etype)


def normalize_to_iob2(labels):
  """Rewrites IOB1 / IOBES / IOB2 labels of one sentence as IOB2.

  S -> B and E -> I (IOBES); an I that does not continue an entity of the
  same type starts one, I -> B (IOB1, or broken IOB2).

  Returns:
    (new_labels, repairs) with repairs a Counter of "S->B", "E->I", "I->B".
  Raises:
    ValueError: a label outside the scheme.
  """
  return _normalize(labels, [parse_label(l) for l in labels])


def _normalize(labels, parsed):
  """normalize_to_iob2 on labels already split by parse_label."""
  out = None  # stays None while the input is valid IOB2 (the common case)
  repairs = collections.Counter()
  prev_prefix, prev_type = OUTSIDE, None
  for i, (prefix, etype) in enumerate(parsed):
    fixed = prefix
    if prefix == "S":
      fixed = "B"
      repairs["S->B"] += 1
    elif prefix == "E":
      fixed = "I"
      repairs["E->I"] += 1
    if fixed == "I" and (prev_prefix == OUTSIDE or prev_type != etype):
      fixed = "B"
      repairs["I->B"] += 1
    if fixed != prefix:
      if out is None:
        out = list(labels)
      out[i] = _join(fixed, etype)
    prev_prefix, prev_type = fixed, etype
  return (list(labels) if out is None else out), repairs


def collapse_label(label):
  """Drops the entity type: "B-Disease" -> "B"; "O" stays "O"."""
  return parse_label(label)[0]


def _read_lines(path):
  """The file's lines, decoded as strict UTF-8, without a BOM or CRs."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise NerFormatError(path, data.count(b"\n", 0, e.start) + 1,
                         "not valid UTF-8 (%s)" % e.reason) from e
  if text.startswith("\ufeff"):
    text = text[1:]
  if "\r" in text:
    text = text.replace("\r\n", "\n")
  lines = text.split("\n")
  if lines and not lines[-1]:
    lines.pop()
  return lines


def _parse_row(path, line_no, line, label_cache):
  """(token, label, (prefix, type)) of one token line; raises on bad rows.

  `label_cache` maps labels already parsed (corpora use a handful)."""
  fields = line.split("\t")
  if len(fields) != 2:
    problem = "no tab" if len(fields) == 1 else "%d columns" % len(fields)
    raise NerFormatError(
        path, line_no,
        "%s: expected 'token<TAB>label', got %r" % (problem, line))
  token, label = fields[0].strip(" "), fields[1].strip(" ")
  if token == DOCSTART:
    return token, label, None
  if not token:
    raise NerFormatError(path, line_no, "empty token in %r" % line)
  if len(token.split()) != 1:
    # Outputs (test_predictions.txt, conlleval) separate columns with
    # spaces: such a token would be ambiguous there.
    raise NerFormatError(
        path, line_no, "token %r contains whitespace; split it into "
        "tokens (one per line) or replace the whitespace" % token)
  pair = label_cache.get(label)
  if pair is None:
    try:
      pair = label_cache[label] = parse_label(label)
    except ValueError as e:
      raise NerFormatError(path, line_no, str(e)) from e
  return token, label, pair


def parse_iob_file(path, collapse_types=False):
  """Reads one token-per-line file; see the module docstring.

  Returns:
    An IobFile.
  Raises:
    NerFormatError: bad UTF-8, a line without a tab or with extra columns, an
      empty token or one containing whitespace, a label outside B/I/O/E/S,
      or a file without sentences.
  """
  all_lines = _read_lines(path)
  sentences, token_lines = [], []
  repairs = collections.Counter()
  num_docstart = 0
  label_cache = {}
  rows = []  # (token, label, parsed label, line number) of this sentence

  def flush():
    if rows:
      tokens, labels, parsed, lines = zip(*rows)
      iob2, fixed = _normalize(list(labels), list(parsed))
      repairs.update(fixed)
      if collapse_types:
        iob2 = [collapse_label(l) for l in iob2]
      sentences.append(Sentence(list(tokens), iob2))
      token_lines.append(list(lines))
    del rows[:]

  for line_no, line in enumerate(all_lines, 1):
    if not line or line.isspace():
      flush()
      continue
    token, label, pair = _parse_row(path, line_no, line, label_cache)
    if pair is None:  # -DOCSTART-
      num_docstart += 1
      flush()
      continue
    rows.append((token, label, pair, line_no))
  flush()
  if not sentences:
    raise NerFormatError(path, max(len(all_lines), 1),
                         "empty split: no sentences in the file")
  if repairs:
    logging.info("%s: %d labels normalised to IOB2 (%s)", path,
                 sum(repairs.values()),
                 ", ".join("%s %d" % kv for kv in sorted(repairs.items())))
  return IobFile(path, sentences, token_lines, repairs, num_docstart)


def read_iob_file(path, collapse_types=False):
  """The sentences of one token-per-line file, labels in IOB2."""
  return parse_iob_file(path, collapse_types).sentences


def write_iob_file(path, sentences):
  """Writes sentences as `token<TAB>label` lines, atomically
  (`albert.file_utils.atomic_file`): the file appears complete or not at
  all."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with file_utils.atomic_file(path) as out:
    for sentence in sentences:
      for token, label in zip(sentence.tokens, sentence.labels):
        if not token or any(c in token for c in "\t\n\r"):
          raise ValueError("cannot write token %r" % token)
        out.write("%s\t%s\n" % (token, label))
      out.write("\n")


def count_mentions(sentences):
  """Number of entity mentions (labels starting with B) in IOB2 sentences."""
  return sum(1 for s in sentences for l in s.labels if l.startswith("B"))


def get_label_list(*sentence_lists):
  """All labels in the given sentence lists: "O" first, then sorted."""
  labels = set()
  for sentences in sentence_lists:
    for sentence in sentences:
      labels.update(sentence.labels)
  labels.discard(OUTSIDE)
  return [OUTSIDE] + sorted(labels)


def find_unseen_labels(reference_sentences, iob_file):
  """Labels of `iob_file` absent from `reference_sentences` (e.g. train).

  Returns:
    [(label, line)] with the first line where each unseen label occurs.
  """
  known = set(get_label_list(reference_sentences))
  first = {}
  for sentence, lines in zip(iob_file.sentences, iob_file.token_lines):
    for label, line in zip(sentence.labels, lines):
      if label not in known and label not in first:
        first[label] = line
  return sorted(first.items(), key=lambda kv: kv[1])


def check_unseen_labels(reference_sentences, iob_file, strict=False):
  """Warns (or, if strict, raises NerFormatError) for labels never in train.

  The model cannot predict such a label, so dev/test scores are capped; it is
  recoverable, hence a warning by default. Returns the list of (label, line).
  """
  unseen = find_unseen_labels(reference_sentences, iob_file)
  for label, line in unseen:
    message = "label %r never occurs in the training data" % label
    if strict:
      raise NerFormatError(iob_file.path, line, message)
    logging.warning("%s:%d: %s", iob_file.path, line, message)
  return unseen


def split_path(data_dir, split):
  """The file of `split` in `data_dir`, or None if absent."""
  for name in SPLIT_FILES[split]:
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      return path
  return None


def load_split_files(data_dir, collapse_types=False):
  """Parses every split file of a dataset directory.

  Returns:
    dict split -> IobFile for "train", "dev", "test" and, if present,
    "train_dev".
  Raises:
    FileNotFoundError: a required split file is missing.
    NerFormatError: a malformed file.
  """
  if not os.path.isdir(data_dir):
    raise FileNotFoundError("NER data directory not found: %s" % data_dir)
  files = collections.OrderedDict()
  for split in SPLIT_FILES:
    path = split_path(data_dir, split)
    if path is None:
      if split in REQUIRED_SPLITS:
        raise FileNotFoundError(
            "%s: no %s split (expected %s)" %
            (data_dir, split, " or ".join(SPLIT_FILES[split])))
      continue
    files[split] = parse_iob_file(path, collapse_types)
  return files


def load_splits(data_dir, collapse_types=False, strict_labels=False):
  """Reads a dataset directory into {split: [Sentence]}.

  Logs sentence/token/mention counts per split and warns about dev/test
  labels never seen in train. Checking the counts against the known
  datasets is `bio.ner.datasets.load`'s job: this reader knows no dataset.

  Args:
    data_dir: directory with train.tsv, devel.tsv or dev.tsv, test.tsv and
      optionally train_dev.tsv.
    collapse_types: drop entity types (BioBERT-style B/I/O).
    strict_labels: raise NerFormatError instead of warning on unseen labels.

  Returns:
    dict with keys "train", "dev", "test" (and "train_dev" when present).
  """
  files = load_split_files(data_dir, collapse_types)
  train = files["train"].sentences
  for split in ("dev", "test"):
    check_unseen_labels(train, files[split], strict=strict_labels)
  for iob_file in files.values():
    logging.info("%s: %d sentences, %d tokens, %d mentions", iob_file.path,
                 len(iob_file.sentences),
                 sum(len(s.tokens) for s in iob_file.sentences),
                 count_mentions(iob_file.sentences))
  return collections.OrderedDict(
      (split, iob_file.sentences) for split, iob_file in files.items())
