"""bio.beam.prepare_corpus against the single-machine bio.corpus.prepare
(FnApiRunner, CPU).

Skipped when apache_beam is not installed (`pip install .[beam]`). The
inputs and both runs are fixtures of tests/bio/beam/conftest.py.
"""
import collections
import gzip
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

import pytest

beam = pytest.importorskip("apache_beam")

# pylint: disable=wrong-import-position
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from bio.beam import prepare_corpus as beam_prepare_corpus
from bio.corpus import prepare
from bio.corpus import pubmed
from bio.corpus import shards

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
RUNNER = ["--runner=FnApiRunner"]
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "jats")


# ------------------------------------------------- PubMed update semantics ---

def _norm(text):
  return " ".join(text.split())


def _pmid(article):
  return int(article.findtext("MedlineCitation/PMID"))


def _expected_documents(files):
  """An independent replay of baseline + updates: the text of every document
  that should survive (title and abstract sections, whitespace-normalised,
  lines under 20 characters left out, all joined by spaces)."""
  latest = {}
  for path in sorted(files, key=os.path.basename):
    with gzip.open(path) as f:
      root = ET.parse(f).getroot()
    for elem in root:
      if elem.tag == "PubmedArticle":
        latest[_pmid(elem)] = elem
      elif elem.tag == "DeleteCitation":
        for pmid in elem.findall("PMID"):
          latest.pop(int(pmid.text), None)
  texts = []
  for elem in latest.values():
    article = elem.find("MedlineCitation/Article")
    sections = [_norm("".join(a.itertext()))
                for a in article.findall("Abstract/AbstractText")]
    sections = [s for s in sections if s]
    if not sections:
      continue
    lines = [_norm("".join(article.find("ArticleTitle").itertext()))]
    lines += sections
    texts.append(" ".join(line for line in lines if len(line) >= 20))
  return collections.Counter(texts)


def test_pubmed_beam_documents_equal_single_machine(corpus_runs,
                                                    corpus_documents):
  single_dir, single = corpus_runs["single"]
  beam_dir, manifest = corpus_runs["beam"]
  beam_docs = corpus_documents(beam_dir, manifest)
  single_docs = corpus_documents(single_dir, single)
  assert collections.Counter(beam_docs) == collections.Counter(single_docs)
  # Both equal an independent replay of the update semantics.
  assert collections.Counter(" ".join(d) for d in beam_docs) == (
      _expected_documents(corpus_runs["inputs"]))
  text = "\n".join("\n".join(d) for d in beam_docs)
  assert "Early revision" not in text and "Abstract-less" not in text
  assert "Late revision" in text and "Re-added revision" in text
  # 4 base records replaced by later ones, one duplicate inside the crafted
  # file, and 2 records deleted.
  assert manifest["totals"]["skipped"] == single["totals"]["skipped"]
  assert manifest["totals"]["skipped"]["superseded"] == 5
  assert manifest["totals"]["skipped"]["deleted"] == 2
  for key in ("documents", "sentences", "words", "bytes", "shards", "units"):
    assert manifest["totals"][key] == single["totals"][key]
  assert manifest["units"] == single["units"]
  with open(os.path.join(beam_dir, shards.MANIFEST), encoding="utf-8") as f:
    assert json.load(f) == manifest


def test_pubmed_beam_counters_and_single_machine_resume(corpus_runs,
                                                       beam_settings):
  beam_dir, manifest = corpus_runs["beam"]
  counters = corpus_runs["counters"]
  totals = manifest["totals"]
  for key in ("documents", "sentences", "words", "shards", "units"):
    assert counters[key] == totals[key]
  assert counters["output_bytes"] == totals["bytes"]
  for reason, count in totals["skipped"].items():
    assert counters["skipped_" + reason] == count
  assert counters["indexed_deletions"] == 6 + 4
  # Part records are the single-machine ones: it takes every unit as done.
  messages = []
  prepare.run(beam_settings("pubmed", ",".join(corpus_runs["inputs"]),
                            beam_dir), report=messages.append)
  assert "3 of 3 units already complete: skipped" in messages
  assert not [n for n in os.listdir(beam_dir) if "tmp" in n]


def _random_indexes(rng, num_files):
  indexes = []
  for _ in range(num_files):
    pmids = [rng.choice([pubmed.NO_PMID] + list(range(1, 13)))
             for _ in range(rng.randrange(0, 12))]
    deletions = sorted((rng.randrange(0, len(pmids) + 1), rng.randrange(1, 13))
                       for _ in range(rng.randrange(0, 4)))
    indexes.append(pubmed.FileIndex(pmids, deletions, None))
  return indexes


@pytest.mark.parametrize("seed", range(30))
def test_keyed_combine_matches_build_plan(seed):
  rng = random.Random(seed)
  indexes = _random_indexes(rng, rng.randrange(1, 5))
  paths = ["/in/pubmed26n%04d.xml.gz" % i for i in range(len(indexes))]
  events = collections.defaultdict(list)
  for rank, index in enumerate(indexes):
    for pmid, event in beam_prepare_corpus.index_events(rank, index):
      events[pmid].append(event)
  combine = beam_prepare_corpus.LatestEventFn()
  drops = {p: {} for p in paths}
  for pmid, pmid_events in events.items():
    # As a runner would: partial accumulators over shuffled bundles.
    rng.shuffle(pmid_events)
    cut = rng.randrange(0, len(pmid_events) + 1)
    partial = []
    for bundle in (pmid_events[:cut], pmid_events[cut:]):
      acc = combine.create_accumulator()
      for event in bundle:
        acc = combine.add_input(acc, event)
      partial.append(acc)
    out = combine.extract_output(combine.merge_accumulators(partial))
    for path, (position, reason) in beam_prepare_corpus.dropped_records(
        (pmid, out), paths):
      assert position not in drops[path]
      drops[path][position] = reason
  assert [drops[p] for p in paths] == pubmed.build_plan(indexes)


# --------------------------------------------- remote (object store) paths ---

class _FakeObjectStore(LocalFileSystem):
  """`fakegs://key` kept in ROOT/key, without directories, as GCS keeps
  objects: the code paths of gs:// inputs and outputs, with no network."""

  ROOT = None
  PREFIX = "fakegs://"

  @classmethod
  def scheme(cls):
    return "fakegs"

  def _local(self, path):
    assert path.startswith(self.PREFIX), path
    return os.path.join(self.ROOT, path[len(self.PREFIX):])

  def join(self, basepath, *paths):
    return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

  def split(self, path):
    head, _, tail = path.rstrip("/").rpartition("/")
    return head, tail

  def mkdirs(self, path):
    pass

  def has_dirs(self):
    return False

  def _list(self, dir_or_prefix):
    for dirpath, _, names in os.walk(self.ROOT):
      for name in names:
        local = os.path.join(dirpath, name)
        key = self.PREFIX + os.path.relpath(local, self.ROOT)
        if key.startswith(dir_or_prefix):
          yield FileMetadata(key, os.path.getsize(local),
                             os.path.getmtime(local))

  def create(self, path, *args, **kwargs):
    return super().create(self._local(path), *args, **kwargs)

  def open(self, path, *args, **kwargs):
    return super().open(self._local(path), *args, **kwargs)

  def copy(self, sources, destinations):
    super().copy([self._local(p) for p in sources],
                 [self._local(p) for p in destinations])

  def rename(self, sources, destinations):
    super().rename([self._local(p) for p in sources],
                   [self._local(p) for p in destinations])

  def exists(self, path):
    return super().exists(self._local(path))

  def size(self, path):
    return super().size(self._local(path))

  def last_updated(self, path):
    return super().last_updated(self._local(path))

  def checksum(self, path):
    return super().checksum(self._local(path))

  def metadata(self, path):
    local = self._local(path)
    return FileMetadata(path, os.path.getsize(local), os.path.getmtime(local))

  def delete(self, paths):
    for path in paths:
      os.remove(self._local(path))


def test_remote_inputs_and_output_dir(corpus_runs, tmp_path, beam_settings,
                                      corpus_documents):
  _FakeObjectStore.ROOT = str(tmp_path / "store")
  os.makedirs(os.path.join(_FakeObjectStore.ROOT, "in"))
  for path in corpus_runs["inputs"]:
    with open(path, "rb") as f:
      data = f.read()
    with open(os.path.join(_FakeObjectStore.ROOT, "in",
                           os.path.basename(path)), "wb") as f:
      f.write(data)
  manifest, counters = beam_prepare_corpus.run(
      beam_settings("pubmed", "fakegs://in/*.xml.gz", "fakegs://out"),
      RUNNER)
  local_dir, local = corpus_runs["beam"]
  out = os.path.join(_FakeObjectStore.ROOT, "out")
  assert collections.Counter(corpus_documents(out, manifest)) == (
      collections.Counter(corpus_documents(local_dir, local)))
  assert manifest["totals"] == local["totals"]
  assert counters["documents"] == local["totals"]["documents"]
  assert manifest["units"][0]["inputs"] == ["fakegs://in/pubmed26n1334.xml.gz"]
  assert {src for s in manifest["shards"] for src in s["sources"]} == {
      "fakegs://in/" + os.path.basename(p) for p in corpus_runs["inputs"]}
  names = set(os.listdir(out))
  assert shards.MANIFEST in names and not [n for n in names if "tmp" in n]
  assert len(os.listdir(os.path.join(out, shards.PARTS_DIR))) == 3
  # A re-run with fewer documents per shard leaves no stale shard behind.
  manifest, _ = beam_prepare_corpus.run(
      beam_settings("pubmed", "fakegs://in/*.xml.gz", "fakegs://out",
                    shard_docs=1000), RUNNER)
  assert sorted(n for n in os.listdir(out) if n.endswith(".txt")) == sorted(
      s["file"] for s in manifest["shards"])


# ------------------------------------------------------------- bad input ---

def test_unreadable_records_are_counted_and_the_pipeline_goes_on(
    tmp_path, beam_settings, corpus_documents):
  inputs = tmp_path / "in"
  inputs.mkdir()
  good = ["exclude_table.nxml", "full_article.nxml"]
  with tarfile.open(inputs / "oa_package.tar.gz", "w:gz") as tar:
    for name in good:
      tar.add(os.path.join(FIXTURES, name), arcname="PMC/" + name)
    data = b"<article><body><p>cut short"
    info = tarfile.TarInfo("PMC/broken.nxml")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
  (inputs / "loose_broken.nxml").write_bytes(b"")
  out = str(tmp_path / "beam")
  manifest, counters = beam_prepare_corpus.run(
      beam_settings("pmc", str(inputs), out), RUNNER)
  single = prepare.run(beam_settings("pmc", str(inputs),
                                     str(tmp_path / "single")),
                       report=lambda msg: None)
  errors = {(os.path.basename(e["file"]), e.get("member")): e["reason"]
            for e in manifest["errors"]}
  assert set(errors) == {("oa_package.tar.gz", "PMC/broken.nxml"),
                         ("loose_broken.nxml", None)}
  assert "malformed XML" in errors[("oa_package.tar.gz", "PMC/broken.nxml")]
  assert counters["unreadable"] == 2
  assert counters["skipped_bad_record"] == 2
  # The good articles of the package are there, as in the single run.
  assert manifest["totals"]["documents"] == 2 == counters["documents"]
  assert collections.Counter(corpus_documents(out, manifest)) == (
      collections.Counter(corpus_documents(str(tmp_path / "single"),
                                           single)))
  assert manifest["errors"] == single["errors"]


def test_damaged_pubmed_file_keeps_its_records_before_the_damage(
    pubmed_dir, tmp_path, beam_settings):
  with open(os.path.join(pubmed_dir, "pubmed26n1334.xml.gz"), "rb") as f:
    data = f.read()
  inputs = tmp_path / "in"
  inputs.mkdir()
  (inputs / "pubmed26n1334.xml.gz").write_bytes(data[:len(data) // 2])
  manifest, counters = beam_prepare_corpus.run(
      beam_settings("pubmed", str(inputs), str(tmp_path / "beam")),
      RUNNER)
  assert counters["unreadable"] == 1 and counters["skipped_bad_file"] == 1
  assert 0 < manifest["totals"]["documents"] < 30
  assert len(manifest["plan_errors"]) == 1
  assert "truncated gzip" in manifest["plan_errors"][0]


# ------------------------------------------------------------------- CLI ---

def _cli(module, *args):
  return subprocess.run(
      [sys.executable, "-m", module] + list(args), cwd=ROOT,
      capture_output=True, text=True, timeout=300, check=False)


def test_cli_strict_exit_status(tmp_path):
  # --strict turns an unreadable input into status 3.
  inputs = tmp_path / "pmc"
  inputs.mkdir()
  (inputs / "broken.nxml").write_bytes(b"<article><body>")
  with open(os.path.join(FIXTURES, "exclude_table.nxml"), "rb") as f:
    (inputs / "table.nxml").write_bytes(f.read())
  proc = _cli("bio.beam.prepare_corpus", "--source=pmc",
              "--input=%s" % inputs, "--output_dir=%s" % (tmp_path / "c"),
              "--strict", "--runner=FnApiRunner")
  assert proc.returncode == 3, proc.stderr[-3000:]
  assert "unreadable: %s" % (inputs / "broken.nxml") in proc.stderr
  assert "1 documents" in proc.stderr



def test_flags_are_validated_and_others_left_for_beam():
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  beam_prepare_corpus.define_flags(flag_values)
  rest = flag_values(["prog", "--source=pubmed", "--input=x", "--output_dir=y",
                      "--shard_docs=-1", "--runner=FnApiRunner",
                      "--num_workers=7"], known_only=True)
  assert rest == ["prog", "--runner=FnApiRunner", "--num_workers=7"]
  with pytest.raises(app.UsageError, match="must be >= 0"):
    beam_prepare_corpus.settings_from_flags(flag_values)


def test_output_dir_that_cannot_be_made_is_a_usage_error(tmp_path,
                                                         beam_settings):
  from absl import app  # pylint: disable=g-import-not-at-top
  blocker = tmp_path / "a_file"
  blocker.write_text("mine")
  inputs = tmp_path / "in"
  inputs.mkdir()
  (inputs / "table.nxml").write_bytes(
      open(os.path.join(FIXTURES, "exclude_table.nxml"), "rb").read())
  with pytest.raises(app.UsageError, match="cannot create it"):
    beam_prepare_corpus.run(
        beam_settings("pmc", str(inputs), str(blocker / "out")), RUNNER)
  assert blocker.read_text() == "mine"
