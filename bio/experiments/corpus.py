r"""An unlabelled biomedical corpus for small pretraining experiments, built
from the shared data and kept free of the text the models are evaluated on.

  python -m bio.experiments.corpus --output_dir=exp/corpus \
      --evaluate=NCBI-disease,BC5CDR-chem,BC2GM [--data_dir=DIR]

Sources (each used when present under the data root, see `bio.paths`):
  chemdner   the CHEMDNER abstracts (ner-raw/chemdner/*.abstracts.txt), title
             and abstract cleaned (`bio.text.clean`) and sentence-split
             (`bio.text.sentences`); a document each.
  ner-train  the words of the *training* split of every BioNER dataset (never
             devel or test), joined by spaces, in file order, cut into
             documents of --sentences_per_document sentences (the files keep
             no abstract boundaries).
  pubmed     the PubMed XML sample (pubmed/*.xml.gz, pubmed/updates/*.xml.gz),
             read as `bio.corpus.prepare` reads it.

--task_repeat=N puts the training text of the --evaluate datasets in the
corpus N times (task-adaptive pretraining, Gururangan et al. 2020, "Don't
Stop Pretraining"): the copies are dealt to the shards like any document,
so create_pretraining_data.py masks each differently. Only the IOB training
splits are repeated (BC4CHEMD's text is the chemdner source, read once).

Leak guard: a sentence is dropped when it shares any window of
`WINDOW_CHARS` characters (lower-cased, whitespace removed, so tokenization
does not matter) with a devel or test sentence of a dataset in --evaluate;
a sentence already taken (same normalised text) is dropped as a duplicate
(BC5CDR-chem and BC5CDR-disease share their text). Both counts are
reported per source.

Outputs in --output_dir, each written atomically:
  corpus-NNNNN.txt    one sentence per line, a blank line between documents
                      (the input of create_pretraining_data.py); documents
                      are shuffled with a fixed seed and dealt to the shards
  corpus_report.json  per source: documents, sentences, words, dropped leaks
                      and duplicates, words added by --task_repeat's extra copies
                      (repeated_words); the evaluation sets (with the SHA-256
                      of their devel/test files) and the settings. Written
                      last: its presence marks a complete corpus, and a
                      re-run with the same settings reuses it, with other
                      settings refuses.

Not in upstream ALBERT or the paper: the paper pretrains on all of PubMed
and PMC; this is the small stand-in that `bio.experiments.pretraining_gain`
and `make demo` use.
"""
import dataclasses
import glob
import hashlib
import json
import os
import random
import re
import sys

from absl import app
from absl import flags
from absl import logging

from albert import file_utils
from bio import paths
from bio.corpus import pubmed
from bio.ner import chemdner
from bio.ner import datasets
from bio.ner import iob
from bio.text import clean
from bio.text import sentences as sentence_splitter

REPORT_FILE = "corpus_report.json"
SHARD_PATTERN = "corpus-%05d.txt"
_SHARD_RE = re.compile(r"corpus-\d{5}\.txt")
# Long enough that two unrelated sentences almost never share a window,
# short enough to catch a sentence split differently by two datasets.
WINDOW_CHARS = 50
SOURCES = ("chemdner", "ner-train", "pubmed")
CHEMDNER_FILES = ("training", "development", "evaluation")
_SPACE_RE = re.compile(r"\s+")


class CorpusError(Exception):
  """A user error: bad settings, missing data, or a clashing directory."""


@dataclasses.dataclass(frozen=True)
class CorpusOptions(object):
  """What defines a corpus (recorded in the report)."""
  output_dir: str
  evaluate: tuple = ("NCBI-disease",)
  sources: tuple = SOURCES
  sentences_per_document: int = 8
  num_shards: int = 4
  seed: int = 12345
  data_dir: str = None
  # Copies of the evaluated datasets' training text (1: once, as the rest).
  task_repeat: int = 1

  def settings(self):
    return {"evaluate": list(self.evaluate), "sources": list(self.sources),
            "sentences_per_document": self.sentences_per_document,
            "num_shards": self.num_shards, "seed": self.seed,
            "window_chars": WINDOW_CHARS, "task_repeat": self.task_repeat}


def backfill_settings(settings):
  """A report's settings written before a setting existed, with the value
  it had then, so an upgrade reuses an unchanged corpus."""
  return dict({"task_repeat": 1}, **settings)


def normalize(text):
  """The form compared by the leak guard and the de-duplication."""
  return _SPACE_RE.sub("", text).lower()


def _windows(key):
  if len(key) <= WINDOW_CHARS:
    return [key]
  return [key[i:i + WINDOW_CHARS] for i in range(len(key) - WINDOW_CHARS + 1)]


class LeakGuard(object):
  """Knows every devel/test sentence of the evaluated datasets."""

  def __init__(self, texts):
    self._short = set()   # sentences shorter than a window: whole match
    self._windows = set()
    for text in texts:
      key = normalize(text)
      if not key:
        continue
      if len(key) < WINDOW_CHARS:
        self._short.add(key)
      else:
        self._windows.update(hash(w) for w in _windows(key))

  def leaks(self, sentence):
    key = normalize(sentence)
    if key in self._short:
      return True
    if len(key) < WINDOW_CHARS:
      return False
    return any(hash(w) in self._windows for w in _windows(key))


def _sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def evaluation_sets(names, data_dir):
  """({name: {split: sha256}}, [devel/test sentence texts]) of `names`."""
  described, texts = {}, []
  for name in names:
    try:
      directory = datasets.resolve_dataset_dir(name, data_dir)
    except (ValueError, FileNotFoundError) as e:
      raise CorpusError("--evaluate: %s" % e)
    splits = iob.load_splits(directory)
    entry = described[datasets.get_dataset(name)["name"]] = {}
    for split in ("dev", "test"):
      path = _split_path(directory, split)
      entry[split] = {
          "file": path, "sha256": _sha256(path),
          "sentences": len(splits[split])}
      texts.extend(" ".join(s.tokens) for s in splits[split])
  return described, texts


def _split_path(directory, split):
  for name in iob.SPLIT_FILES[split]:
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  raise CorpusError("no %s file in %s" % (split, directory))


# ---------------------------------------------------------------------------
# Sources: each yields documents (lists of sentences).


def chemdner_documents(data_dir):
  raw = datasets.raw_chemdner_dir(data_dir)
  if raw is None:
    return
  for part in CHEMDNER_FILES:
    path = os.path.join(raw, "%s.abstracts.txt" % part)
    if not os.path.isfile(path):
      continue
    for doc in chemdner.read_abstracts(path).values():
      lines = clean.clean_lines([doc["T"], doc["A"]])
      yield sentence_splitter.split_lines(lines)


def ner_train_documents(data_dir, sentences_per_document, keep=None):
  """Training-split words of every registry dataset present (of those for
  which `keep(name)` is true, when given)."""
  for name in datasets.DATASETS:
    if datasets.get_dataset(name).get("converter"):
      continue  # BC4CHEMD is the CHEMDNER text, read above
    if keep is not None and not keep(name):
      continue
    try:
      directory = datasets.resolve_dataset_dir(name, data_dir, convert=False)
    except FileNotFoundError:
      continue
    train = iob.read_iob_file(_split_path(directory, "train"))
    texts = [" ".join(s.tokens) for s in train]
    for i in range(0, len(texts), sentences_per_document):
      yield texts[i:i + sentences_per_document]


def pubmed_documents(data_dir):
  root = paths.resolve_data_dir(data_dir)
  files = sorted(glob.glob(os.path.join(root, "pubmed", "*.xml.gz")) +
                 glob.glob(os.path.join(root, "pubmed", "updates",
                                        "*.xml.gz")))
  for path in files:
    for article in pubmed.read_file(path):
      lines = clean.clean_lines(pubmed.article_blocks(article))
      yield sentence_splitter.split_lines(lines)


def source_entries(source, opts):
  """[(source, documents, copies)] of one source: with --task_repeat, the
  evaluated datasets' training text comes first (so de-duplication keeps
  its copy) and `task_repeat` times."""
  if source == "chemdner":
    return [(source, chemdner_documents(opts.data_dir), 1)]
  if source == "pubmed":
    return [(source, pubmed_documents(opts.data_dir), 1)]
  spd = opts.sentences_per_document
  if opts.task_repeat == 1:
    return [(source, ner_train_documents(opts.data_dir, spd), 1)]
  task = {datasets.get_dataset(n)["name"] for n in opts.evaluate}
  return [(source, ner_train_documents(opts.data_dir, spd,
                                       lambda n: n in task), opts.task_repeat),
          (source, ner_train_documents(opts.data_dir, spd,
                                       lambda n: n not in task), 1)]


# ---------------------------------------------------------------------------
# Building


def filter_documents(sources, guard):
  """Drops leaked and repeated sentences; returns (documents, per-source
  counts). `sources` is [(name, iterable of documents, copies)]: a kept
  document goes in `copies` times (counted once, the rest as
  repeated_words); entries may share a name."""
  seen = set()
  kept_docs, counts = [], {}
  for name, documents, copies in sources:
    c = counts.setdefault(name, {
        "documents": 0, "sentences": 0, "words": 0, "dropped_leaks": 0,
        "dropped_duplicates": 0, "repeated_words": 0})
    for doc in documents:
      kept = []
      for sentence in doc:
        key = normalize(sentence)
        if not key:
          continue
        if guard.leaks(sentence):
          c["dropped_leaks"] += 1
        elif key in seen:
          c["dropped_duplicates"] += 1
        else:
          seen.add(key)
          kept.append(sentence)
      if kept:
        kept_docs.extend([kept] * copies)
        words = sum(len(s.split()) for s in kept)
        c["documents"] += 1
        c["sentences"] += len(kept)
        c["words"] += words
        c["repeated_words"] += words * (copies - 1)
  return kept_docs, counts


def shard_texts(documents, num_shards, seed):
  """Shard contents: documents shuffled (seeded) and dealt round-robin."""
  order = list(range(len(documents)))
  random.Random(seed).shuffle(order)
  shards = [[] for _ in range(num_shards)]
  for n, i in enumerate(order):
    shards[n % num_shards].append("\n".join(documents[i]) + "\n")
  return ["\n".join(docs) for docs in shards]


def read_report(output_dir):
  path = os.path.join(output_dir, REPORT_FILE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def build(opts, log=logging.info):
  """Builds the corpus in opts.output_dir (or reuses a complete one built
  with the same settings). Returns the report."""
  _check_options(opts)
  report = read_report(opts.output_dir)
  if report is not None:
    found = backfill_settings(report["settings"])
    if found != opts.settings():
      raise CorpusError(
          "%s holds a corpus built with other settings (%s); use another "
          "output directory" % (opts.output_dir, ", ".join(
              setting_differences(found, opts.settings()))))
    log("corpus already built: %s" % opts.output_dir)
    return report
  os.makedirs(opts.output_dir, exist_ok=True)
  _check_no_foreign_shards(opts.output_dir)
  described, texts = evaluation_sets(opts.evaluate, opts.data_dir)
  guard = LeakGuard(texts)
  log("leak guard: %d devel/test sentences of %s" % (
      len(texts), ", ".join(described)))
  documents, counts = filter_documents(
      [e for s in opts.sources for e in source_entries(s, opts)], guard)
  for source, c in counts.items():
    log("%-9s %6d documents %7d sentences %9d words%s; dropped %d leaked, "
        "%d repeated sentences" % (
            source, c["documents"], c["sentences"], c["words"],
            " (+%d in task copies)" % c["repeated_words"]
            if c["repeated_words"] else "", c["dropped_leaks"],
            c["dropped_duplicates"]))
  if not documents:
    raise CorpusError("no source text found under the data directory "
                      "(sources: %s)" % ", ".join(opts.sources))
  shards = shard_texts(documents, opts.num_shards, opts.seed)
  names = []
  for i, text in enumerate(shards):
    names.append(SHARD_PATTERN % i)
    file_utils.atomic_write(os.path.join(opts.output_dir, names[-1]), text)
  report = {"settings": opts.settings(), "evaluation_sets": described,
            "sources": counts, "shards": names,
            "total": {k: sum(c[k] for c in counts.values())
                      for k in ("documents", "sentences", "words",
                                "dropped_leaks", "dropped_duplicates",
                                "repeated_words")}}
  file_utils.atomic_write_json(os.path.join(opts.output_dir, REPORT_FILE),
                               report)
  return report


def _check_options(opts):
  unknown = sorted(set(opts.sources) - set(SOURCES))
  if unknown or not opts.sources:
    raise CorpusError("--sources: unknown %s (choose from %s)" % (
        ", ".join(unknown) or "(none given)", ", ".join(SOURCES)))
  if min(opts.sentences_per_document, opts.num_shards, opts.task_repeat) < 1:
    raise CorpusError("--sentences_per_document, --num_shards and "
                      "--task_repeat must be at least 1")


def _check_no_foreign_shards(output_dir):
  """Shards with our names but no report: an interrupted build of ours is
  replaced; a directory holding anything else is refused."""
  others = [n for n in os.listdir(output_dir)
            if not _SHARD_RE.fullmatch(n)
            and not file_utils.is_temp_name(n)]
  if others:
    raise CorpusError("%s is not empty and holds no corpus report (found %s);"
                      " use a new or empty --output_dir" % (
                          output_dir, ", ".join(sorted(others)[:3])))


def setting_differences(old, new, prefix=""):
  """["key: old -> new", ...] of two settings dicts; nested dicts give
  dotted keys ("recipe.pretrain_steps: 2000 -> 7")."""
  out = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      out.extend(setting_differences(a, b, prefix + key + "."))
    elif a != b:
      out.append("%s%s: %r -> %r" % (prefix, key, a, b))
  return out


def define_flags():
  flags.DEFINE_string("output_dir", None, "Where the corpus is written.")
  flags.DEFINE_string("data_dir", None, "Data root (default: "
                      "$BIOALBERT_DATA_DIR, then ../shared/data).")
  flags.DEFINE_list("evaluate", ["NCBI-disease"],
                    "Datasets whose devel/test text must stay out.")
  flags.DEFINE_list("sources", list(SOURCES), "Sources to use.")
  flags.DEFINE_integer("sentences_per_document", 8,
                       "Document size for the NER training text.")
  flags.DEFINE_integer("num_shards", 4, "Output files.")
  flags.DEFINE_integer("seed", 12345, "Seed of the document shuffle.")
  flags.DEFINE_integer("task_repeat", 1, "Copies of the --evaluate datasets' "
                       "training text in the corpus.")
  flags.mark_flag_as_required("output_dir")


def main(argv):
  del argv
  opts = CorpusOptions(
      output_dir=flags.FLAGS.output_dir, data_dir=flags.FLAGS.data_dir,
      evaluate=tuple(flags.FLAGS.evaluate),
      sources=tuple(flags.FLAGS.sources),
      sentences_per_document=flags.FLAGS.sentences_per_document,
      num_shards=flags.FLAGS.num_shards, seed=flags.FLAGS.seed,
      task_repeat=flags.FLAGS.task_repeat)
  try:
    report = build(opts, log=print)
  except (CorpusError, FileNotFoundError, iob.NerFormatError) as e:
    sys.exit("bio.experiments.corpus: %s" % e)
  print("corpus: %(documents)d documents, %(sentences)d sentences, "
        "%(words)d words" % report["total"] + (
            " (+%d in task copies)" % report["total"]["repeated_words"]
            if report["total"]["repeated_words"] else ""))


if __name__ == "__main__":
  define_flags()
  app.run(main)
