"""CHEMDNER (BioCreative IV) -> BC4CHEMD token-per-line IOB2 files.

The CHEMDNER distribution has, per split, `<split>.abstracts.txt`
(PMID<TAB>title<TAB>abstract) and `<split>.annotations.txt`
(PMID<TAB>T|A<TAB>start<TAB>end<TAB>text<TAB>class, character offsets into
the title or the abstract). BC4CHEMD as used by BioBERT is that corpus
sentence-split, tokenized and tagged IOB2: train = training,
devel = development, test = evaluation. This module does the same:

- sentences: bio.text.sentences.split_sentences, except that a boundary that
  would cut an annotation is dropped (the two sentences stay one);
- tokens: bio.text.word_tokenize (punctuation and hyphens separated, as in the
  other BioNER corpora), then split again at every annotation edge so that
  an entity never starts or ends inside a token;
- labels: the eight CHEMDNER classes become one type, `Chemical`
  (--keep_classes keeps them, e.g. B-SYSTEMATIC);
- IOB2 holds one layer, so an annotation nested inside (or crossing)
  another is reported and left out; every other annotation becomes exactly
  one mention, which is verified from the written labels.

`convert_text` does the same for any text with character-offset standoff
annotations.

  python -m bio.ner.chemdner --input_dir=.../chemdner --output_dir=.../BC4CHEMD
"""
import bisect
import collections
import hashlib
import json
import os
import re
import time

from absl import logging

from albert import file_utils
from bio.ner import iob
from bio.text import sentences as sentence_splitter
from bio.text import word_tokenize

DEFAULT_TYPE = "Chemical"
# CHEMDNER file prefix -> our split file.
SPLITS = collections.OrderedDict([
    ("training", "train.tsv"),
    ("development", "devel.tsv"),
    ("evaluation", "test.tsv"),
])
# The distribution's evaluation abstracts may include the 17,000-abstract
# background set; this file marks the 3,000 annotated ones with "Y".
TEST_LABEL_FILE = "chemdner_abs_test_pmid_label.txt"
STAMP_FILE = "conversion.json"
# BioBERT's BC4CHEMD (MTL-Bioinformatics-2016 conversion) sentence counts.
BIOBERT_SENTENCES = {"train.tsv": 30682, "devel.tsv": 30639,
                     "test.tsv": 26364}

Entity = collections.namedtuple(
    "Entity", ["start", "end", "type", "text", "source"])


class ChemdnerFormatError(iob.NerFormatError):
  """Malformed CHEMDNER input ("file:line: problem")."""


def converter_version():
  """A hash of the code that determines the output (invalidates caches)."""
  digest = hashlib.sha1()
  for module in (__file__, word_tokenize.__file__, sentence_splitter.__file__):
    with open(module, "rb") as f:
      digest.update(f.read())
  return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------
# Reading the distribution.


def read_abstracts(path):
  """PMID -> {"T": title, "A": abstract}, in file order."""
  docs = collections.OrderedDict()
  for line_no, fields in _tsv_rows(path, "PMID<TAB>title<TAB>abstract"):
    pmid = fields[0].strip()
    if not pmid:
      raise ChemdnerFormatError(path, line_no, "empty PMID")
    if pmid in docs:
      raise ChemdnerFormatError(path, line_no, "duplicate PMID %s" % pmid)
    docs[pmid] = {"T": fields[1], "A": fields[2]}
  return docs


def _tsv_rows(path, layout):
  """(line number, fields) of each non-blank line, with as many
  tab-separated fields as `layout` names; errors give file:line."""
  expected = layout.count("<TAB>") + 1
  with open(path, "rb") as f:
    for line_no, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as e:
        raise ChemdnerFormatError(path, line_no,
                                  "not valid UTF-8 (%s)" % e.reason) from e
      if not line.strip():
        continue
      fields = line.split("\t")
      if len(fields) != expected:
        raise ChemdnerFormatError(
            path, line_no, "expected %s, found %d column(s)" %
            (layout, len(fields)))
      yield line_no, fields


def read_annotations(path, docs):
  """(PMID, section) -> [Entity], checking offsets against the text."""
  anns = collections.defaultdict(list)
  for line_no, fields in _tsv_rows(
      path, "PMID<TAB>T|A<TAB>start<TAB>end<TAB>text<TAB>class"):
    pmid, section, start, end, text, cls = fields
    if pmid not in docs:
      raise ChemdnerFormatError(path, line_no,
                                "PMID %s is not in the abstracts" % pmid)
    if section not in ("T", "A"):
      raise ChemdnerFormatError(path, line_no,
                                "section must be T or A, got %r" % section)
    try:
      start, end = int(start), int(end)
    except ValueError as e:
      raise ChemdnerFormatError(path, line_no,
                                "non-integer offset: %s" % e) from e
    body = docs[pmid][section]
    # start == end occurs (empty MULTIPLE annotations in the evaluation
    # set); they are reported as unplaceable, not rejected.
    if not 0 <= start <= end <= len(body):
      raise ChemdnerFormatError(
          path, line_no, "offsets %d-%d outside the %s text (length %d)" %
          (start, end, section, len(body)))
    if body[start:end] != text:
      raise ChemdnerFormatError(
          path, line_no, "text %r does not match %r at %d-%d" %
          (text, body[start:end], start, end))
    anns[(pmid, section)].append(
        Entity(start, end, cls, text, "%s:%d" % (path, line_no)))
  return anns


# ---------------------------------------------------------------------------
# Standoff -> IOB2 (any text).


def resolve_overlaps(entities):
  """Keeps a non-overlapping subset: outer spans first, then earlier ones.

  Returns:
    (kept, dropped): kept sorted by start; dropped as [(entity, kept_one)].
  """
  kept, dropped = [], []
  for ent in sorted(entities, key=lambda e: (e.start, -(e.end - e.start))):
    clash = next((k for k in kept if k.start < ent.end and ent.start < k.end),
                 None)
    if clash is None:
      kept.append(ent)
    else:
      dropped.append((ent, clash))
  kept.sort(key=lambda e: e.start)
  return kept, dropped


def sentence_spans(text, entities=()):
  """[(start, end)] character spans of the sentences of `text`.

  Boundaries come from bio.text.sentences.split_sentences, mapped back onto
  `text`; a boundary that falls inside an entity is dropped. Line breaks are
  always candidate boundaries.
  """
  spans = []
  for line in re.finditer(r"[^\n]+", text):
    words = [(m.start() + line.start(), m.end() + line.start())
             for m in re.finditer(r"\S+", line.group(0))]
    if not words:
      continue
    sizes = [len(s.split())
             for s in sentence_splitter.split_sentences(line.group(0))]
    if sum(sizes) != len(words):
      # The splitter's contract guarantees this; keep the line whole if not.
      logging.warning("sentence splitter changed the words of %r",
                      line.group(0)[:80])
      sizes = [len(words)]
    first = 0
    for size in sizes:
      spans.append((words[first][0], words[first + size - 1][1]))
      first += size
  # Merge neighbours whose gap an entity straddles (judged on the entity's
  # visible extent: whitespace at its edges or alone cuts nothing).
  solid = []
  for e in entities:
    piece = text[e.start:e.end]
    if piece.strip():
      solid.append((e.start + len(piece) - len(piece.lstrip()),
                    e.end - len(piece) + len(piece.rstrip())))
  merged = []
  for start, end in spans:
    if merged and any(a < start and b > merged[-1][1] for a, b in solid):
      merged[-1] = (merged[-1][0], end)
    else:
      merged.append((start, end))
  return merged


def convert_text(text, entities, entity_type=DEFAULT_TYPE):
  """Sentences of `text` with IOB2 labels for non-overlapping `entities`.

  Args:
    text: the document (or section) text.
    entities: [Entity] (or objects with start, end, type) with character
      offsets into `text`, non-overlapping (see resolve_overlaps).
    entity_type: the type of every label; None keeps each entity's type
      (whitespace in it becomes "_").

  Returns:
    (sentences, placed, unplaced): sentences as [[(token, start, end, label)]],
    placed = the entities that became exactly one mention, unplaced = the
    others (e.g. an annotation covering only whitespace).
  """
  entities = sorted(entities, key=lambda e: e.start)
  edges = sorted(p for e in entities for p in (e.start, e.end))
  out = []
  ei = 0  # first entity that does not end before the current token
  current = None  # the entity the previous token belongs to
  for s_start, s_end in sentence_spans(text, entities):
    toks = [(tok, start + s_start, end + s_start) for tok, start, end in
            word_tokenize.tokenize_with_offsets(text[s_start:s_end])]
    lo = bisect.bisect_right(edges, s_start)
    hi = bisect.bisect_left(edges, s_end)
    toks = word_tokenize.split_at_boundaries(toks, edges[lo:hi])
    sentence = []
    for tok, start, end in toks:
      while ei < len(entities) and entities[ei].end <= start:
        ei += 1
      ent = None
      if ei < len(entities) and entities[ei].start <= start:
        ent = entities[ei]  # edges were split, so the token lies inside it
      if ent is None:
        label = "O"
      elif ent is current:
        label = "I-" + _label_type(ent, entity_type)
      else:
        label = "B-" + _label_type(ent, entity_type)
      current = ent
      sentence.append((tok, start, end, label))
    if sentence:  # a "sentence" of invisible characters has no tokens
      out.append(sentence)
  placed, unplaced = _verify(out, entities)
  return out, placed, unplaced


def _label_type(entity, entity_type):
  if entity_type is not None:
    return entity_type
  return re.sub(r"\s+", "_", entity.type.strip()) or "Entity"


def _verify(sentences, entities):
  """Which entities came out as exactly one B-I* run over their own span.

  Mentions are read back from the labels alone (a B and the I's after it,
  within a sentence) and compared with each entity's span, trimmed to the
  tokens it covers.
  """
  found = set()
  spans = []  # (start, end) of every token, in text order
  for sentence in sentences:
    run = None
    for _, start, end, label in sentence:
      spans.append((start, end))
      if label.startswith("I-") and run is not None:
        run[1] = end
        continue
      if run is not None:
        found.add(tuple(run))
      run = [start, end] if label.startswith("B-") else None
    if run is not None:
      found.add(tuple(run))
  starts = [s for s, _ in spans]
  placed, unplaced = [], []
  for ent in entities:
    first = bisect.bisect_left(starts, ent.start)
    last = first
    while last < len(spans) and spans[last][1] <= ent.end:
      last += 1
    span = (spans[first][0], spans[last - 1][1]) if last > first else None
    if span is not None and span in found:
      placed.append(ent)
      found.discard(span)
    else:
      unplaced.append(ent)
  return placed, unplaced


# ---------------------------------------------------------------------------
# Whole corpus.

SplitReport = collections.namedtuple(
    "SplitReport", ["documents", "sentences", "tokens", "annotations",
                    "mentions", "dropped", "unplaced"])


def convert_split(abstracts_path, annotations_path, keep_classes=False,
                  entity_type=DEFAULT_TYPE, pmids=None):
  """Converts one CHEMDNER split.

  Returns:
    (sentences, report): [iob.Sentence] in document order (title then
    abstract) and a SplitReport; report.dropped lists (annotation, the
    annotation it overlaps), report.unplaced (annotation, reason) for those
    that could not become a mention.
  """
  docs = read_abstracts(abstracts_path)
  anns = read_annotations(annotations_path, docs)
  if pmids is not None:
    docs = collections.OrderedDict(
        (pmid, doc) for pmid, doc in docs.items() if pmid in pmids)
  out = []
  num_anns = num_tokens = 0
  placed_total = 0
  dropped, unplaced = [], []
  start_time = last_log = time.time()
  for i, (pmid, sections) in enumerate(docs.items(), 1):
    for section in ("T", "A"):
      entities = anns.get((pmid, section), [])
      num_anns += len(entities)
      unplaced.extend((e, "empty annotation") for e in entities
                      if not e.text.strip())
      kept, clashes = resolve_overlaps(
          [e for e in entities if e.text.strip()])
      dropped.extend(clashes)
      sents, placed, missed = convert_text(
          sections[section], kept,
          entity_type=None if keep_classes else entity_type)
      placed_total += len(placed)
      unplaced.extend((e, "no token run matches it") for e in missed)
      for sentence in sents:
        num_tokens += len(sentence)
        out.append(iob.Sentence([t[0] for t in sentence],
                                     [t[3] for t in sentence]))
    now = time.time()
    if now - last_log > 10:
      rate = i / (now - start_time)
      logging.info("%s: %d/%d documents, %.0f docs/s, ETA %.0f s",
                   abstracts_path, i, len(docs), rate, (len(docs) - i) / rate)
      last_log = now
  report = SplitReport(len(docs), len(out), num_tokens, num_anns,
                       placed_total, sorted(dropped, key=_source_order),
                       sorted(unplaced, key=_source_order))
  return out, report


def _source_order(item):
  """Sort key: the annotation's line in its file."""
  return int(item[0].source.rsplit(":", 1)[1])


def _test_pmids(input_dir):
  path = os.path.join(input_dir, TEST_LABEL_FILE)
  if not os.path.isfile(path):
    return None
  keep = set()
  with open(path, encoding="utf-8") as f:
    for line in f:
      fields = line.split()
      if len(fields) >= 2 and fields[1] == "Y":
        keep.add(fields[0])
  return keep


def split_inputs(input_dir):
  """{output file: (abstracts, annotations)} found in `input_dir`."""
  inputs = collections.OrderedDict()
  for prefix, out_name in SPLITS.items():
    abstracts = os.path.join(input_dir, prefix + ".abstracts.txt")
    annotations = os.path.join(input_dir, prefix + ".annotations.txt")
    for path in (abstracts, annotations):
      if not os.path.isfile(path):
        raise FileNotFoundError("CHEMDNER file missing: %s" % path)
    inputs[out_name] = (abstracts, annotations)
  return inputs


def convert_corpus(input_dir, output_dir, keep_classes=False,
                   entity_type=DEFAULT_TYPE, pmids=None):
  """Converts the three CHEMDNER splits into output_dir/{train,devel,test}.tsv.

  All three are converted in memory first, then each file is written under a
  temporary name and renamed, so a failure leaves no partial output. A
  conversion.json stamp records the counts and the converter version.

  Args:
    pmids: optional set of PMIDs to restrict to (for quick checks).

  Returns:
    {output file name: SplitReport}.
  """
  start = time.time()
  test_keep = _test_pmids(input_dir)
  results = collections.OrderedDict()
  for out_name, (abstracts, annotations) in split_inputs(input_dir).items():
    keep = pmids
    if out_name == "test.tsv" and test_keep is not None:
      keep = test_keep if pmids is None else (pmids & test_keep)
    results[out_name] = convert_split(abstracts, annotations, keep_classes,
                                      entity_type, keep)
  os.makedirs(output_dir, exist_ok=True)
  stamp = {
      "converter_version": converter_version(),
      "input_dir": os.path.abspath(input_dir),
      "keep_classes": bool(keep_classes),
      "entity_type": None if keep_classes else entity_type,
      "subset": pmids is not None,
      "splits": {},
  }
  for out_name, (sents, report) in results.items():
    iob.write_iob_file(os.path.join(output_dir, out_name), sents)
    stamp["splits"][out_name] = {
        "documents": report.documents, "sentences": report.sentences,
        "tokens": report.tokens, "annotations": report.annotations,
        "mentions": report.mentions,
        "dropped_overlapping": [_describe(e, k) for e, k in report.dropped],
        "unplaced": [_describe(e) + ": " + why for e, why in report.unplaced],
        "biobert_sentences": BIOBERT_SENTENCES.get(out_name),
    }
  file_utils.atomic_write_json(os.path.join(output_dir, STAMP_FILE), stamp,
                               indent=1)
  reports = collections.OrderedDict(
      (name, report) for name, (_, report) in results.items())
  logging.info("CHEMDNER converted into %s in %.1f s", output_dir,
               time.time() - start)
  for line in format_report(reports).splitlines():
    logging.info("%s", line)
  return reports


def _describe(entity, clash=None):
  text = "%s %d-%d %r" % (entity.source, entity.start, entity.end,
                          entity.text)
  if clash is not None:
    text += " overlaps %d-%d %r" % (clash.start, clash.end, clash.text)
  return text


def is_current_conversion(output_dir):
  """True if output_dir holds a full conversion by this converter version."""
  path = os.path.join(output_dir, STAMP_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      stamp = json.load(f)
  except (OSError, ValueError):
    return False
  return (stamp.get("converter_version") == converter_version() and
          not stamp.get("subset") and not stamp.get("keep_classes") and
          stamp.get("entity_type") == DEFAULT_TYPE and
          all(os.path.isfile(os.path.join(output_dir, name))
              for name in SPLITS.values()))


def format_report(reports):
  """A table of counts per split next to BioBERT's BC4CHEMD."""
  lines = ["split       docs  sentences (BioBERT)  tokens   annotations  "
           "mentions  nested/overlapping  unplaced"]
  for name, r in reports.items():
    lines.append("%-10s %5d  %9d (%7s)  %7d  %11d  %8d  %18d  %8d" % (
        name, r.documents, r.sentences, BIOBERT_SENTENCES.get(name, "-"),
        r.tokens, r.annotations, r.mentions, len(r.dropped),
        len(r.unplaced)))
  for name, r in reports.items():
    for ent, clash in r.dropped:
      lines.append("%s: not representable in IOB2: %s" %
                   (name, _describe(ent, clash)))
    for ent, why in r.unplaced:
      lines.append("%s: could not place (%s): %s" % (name, why,
                                                      _describe(ent)))
  return "\n".join(lines)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags_obj = flags.FLAGS
  pmids = None
  if flags_obj.pmids:
    pmids = set(p.strip() for p in flags_obj.pmids.split(",") if p.strip())
  try:
    reports = convert_corpus(flags_obj.input_dir, flags_obj.output_dir,
                             keep_classes=flags_obj.keep_classes,
                             entity_type=flags_obj.entity_type, pmids=pmids)
  except (FileNotFoundError, iob.NerFormatError) as e:
    logging.error("%s", e)
    return 1
  print(format_report(reports))
  return 0


def _define_flags():
  # Only when run as a script, so importing this module defines no flags.
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("input_dir", None,
                      "CHEMDNER directory with {training,development,"
                      "evaluation}.{abstracts,annotations}.txt.")
  flags.DEFINE_string("output_dir", None,
                      "Where train.tsv, devel.tsv and test.tsv are written.")
  flags.DEFINE_bool("keep_classes", False,
                    "Keep the CHEMDNER classes (B-SYSTEMATIC, ...) instead "
                    "of one type.")
  flags.DEFINE_string("entity_type", DEFAULT_TYPE,
                      "The single entity type used unless --keep_classes.")
  flags.DEFINE_string("pmids", None,
                      "Comma-separated PMIDs to restrict the conversion to.")
  flags.mark_flags_as_required(["input_dir", "output_dir"])


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
