"""The Beam pipelines against the single-machine commands (FnApiRunner, CPU).

Skipped when apache_beam is not installed (`pip install .[beam]`).
"""
import collections
import copy
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
import tensorflow.compat.v1 as tf

from albert import create_pretraining_data as cpd
from bio.beam import common
from bio.beam import create_pretraining_data as beam_cpd
from bio.beam import prepare_corpus as beam_prepare_corpus
from bio.corpus import prepare
from bio.corpus import pubmed
from bio.corpus import shards

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "jats")
RUNNER = ["--runner=FnApiRunner"]


def _settings(source, inputs, output_dir, **overrides):
  """Settings both commands accept (bio.corpus.prepare's keys)."""
  return prepare.default_settings(
      source, inputs, output_dir, **dict(
          dict(shard_docs=10, shard_bytes=0, unit_bytes=1 << 20,
               progress_secs=600), **overrides))


def _documents(output_dir, manifest):
  """Every document of a corpus output, as a tuple of its sentences."""
  docs = []
  for shard in manifest["shards"]:
    with open(os.path.join(output_dir, shard["file"]), encoding="utf-8") as f:
      for block in f.read().split("\n\n"):
        if block.strip():
          docs.append(tuple(block.strip("\n").split("\n")))
  return docs


# ------------------------------------------------- PubMed update semantics ---

def _norm(text):
  return " ".join(text.split())


def _revised(article, label):
  article = copy.deepcopy(article)
  title = article.find("MedlineCitation/Article/ArticleTitle")
  title.text = "%s revision of: %s" % (label, "".join(title.itertext()))
  for child in list(title):
    title.remove(child)
  return article


def _pmid(article):
  return int(article.findtext("MedlineCitation/PMID"))


def _deletion(*pmids):
  elem = ET.Element("DeleteCitation")
  for pmid in pmids:
    ET.SubElement(elem, "PMID", Version="1").text = str(pmid)
  return elem


def _write_set(path, elements):
  root = ET.Element("PubmedArticleSet")
  root.extend(elements)
  with gzip.open(path, "wb") as f:
    f.write(ET.tostring(root, encoding="utf-8"))


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


@pytest.fixture(scope="module")
def pubmed_update_inputs(pubmed_dir, tmp_path_factory):
  """The shared baseline cut and update file, plus a crafted later update
  that revises, deletes, re-adds and duplicates some of their PMIDs."""
  baseline = os.path.join(pubmed_dir, "pubmed26n1334.xml.gz")
  update = os.path.join(pubmed_dir, "updates", "pubmed26n1335.xml.gz")
  with gzip.open(baseline) as f:
    # Records with an abstract, so that each revision is a document.
    base = [e for e in ET.parse(f).getroot() if e.tag == "PubmedArticle" and
            e.findtext("MedlineCitation/Article/Abstract/AbstractText")]
  with gzip.open(update) as f:
    upd = [e for e in ET.parse(f).getroot() if e.tag == "PubmedArticle"]
  no_abstract = _revised(base[3], "Abstract-less")
  article = no_abstract.find("MedlineCitation/Article")
  article.remove(article.find("Abstract"))
  crafted = [
      _deletion(_pmid(upd[0]), _pmid(base[1])),  # deleted; re-added below
      _revised(base[0], "First"),
      _revised(base[1], "Re-added"),
      _revised(base[2], "Early"),  # superseded again in this same file
      no_abstract,                 # drops base[3], then has no abstract
      _revised(base[2], "Late"),
      _deletion(_pmid(upd[1]), 999999999),  # the latter was never there
  ]
  work = tmp_path_factory.mktemp("pubmed_updates")
  later = str(work / "pubmed26n1336.xml.gz")
  _write_set(later, crafted)
  return [baseline, update, later]


@pytest.fixture(scope="module")
def corpus_runs(pubmed_update_inputs, tmp_path_factory):
  work = tmp_path_factory.mktemp("corpus")
  inputs = ",".join(pubmed_update_inputs)
  single_dir = str(work / "single")
  beam_dir = str(work / "beam")
  single = prepare.run(_settings("pubmed", inputs, single_dir),
                              report=lambda msg: None)
  manifest, counters = beam_prepare_corpus.run(
      _settings("pubmed", inputs, beam_dir), RUNNER)
  return {"single": (single_dir, single), "beam": (beam_dir, manifest),
          "counters": counters, "inputs": pubmed_update_inputs}


def test_pubmed_beam_documents_equal_single_machine(corpus_runs):
  single_dir, single = corpus_runs["single"]
  beam_dir, manifest = corpus_runs["beam"]
  beam_docs = _documents(beam_dir, manifest)
  single_docs = _documents(single_dir, single)
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


def test_pubmed_beam_counters_and_single_machine_resume(corpus_runs):
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
  prepare.run(_settings("pubmed", ",".join(corpus_runs["inputs"]),
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


def test_remote_inputs_and_output_dir(corpus_runs, tmp_path):
  _FakeObjectStore.ROOT = str(tmp_path / "store")
  os.makedirs(os.path.join(_FakeObjectStore.ROOT, "in"))
  for path in corpus_runs["inputs"]:
    with open(path, "rb") as f:
      data = f.read()
    with open(os.path.join(_FakeObjectStore.ROOT, "in",
                           os.path.basename(path)), "wb") as f:
      f.write(data)
  manifest, counters = beam_prepare_corpus.run(
      _settings("pubmed", "fakegs://in/*.xml.gz", "fakegs://out"), RUNNER)
  local_dir, local = corpus_runs["beam"]
  out = os.path.join(_FakeObjectStore.ROOT, "out")
  assert collections.Counter(_documents(out, manifest)) == (
      collections.Counter(_documents(local_dir, local)))
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
      _settings("pubmed", "fakegs://in/*.xml.gz", "fakegs://out",
                shard_docs=1000), RUNNER)
  assert sorted(n for n in os.listdir(out) if n.endswith(".txt")) == sorted(
      s["file"] for s in manifest["shards"])


# ------------------------------------------------------------- bad input ---

def test_unreadable_records_are_counted_and_the_pipeline_goes_on(tmp_path):
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
      _settings("pmc", str(inputs), out), RUNNER)
  single = prepare.run(_settings("pmc", str(inputs),
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
  assert collections.Counter(_documents(out, manifest)) == (
      collections.Counter(_documents(str(tmp_path / "single"), single)))
  assert manifest["errors"] == single["errors"]


def test_damaged_pubmed_file_keeps_its_records_before_the_damage(
    pubmed_dir, tmp_path):
  with open(os.path.join(pubmed_dir, "pubmed26n1334.xml.gz"), "rb") as f:
    data = f.read()
  inputs = tmp_path / "in"
  inputs.mkdir()
  (inputs / "pubmed26n1334.xml.gz").write_bytes(data[:len(data) // 2])
  manifest, counters = beam_prepare_corpus.run(
      _settings("pubmed", str(inputs), str(tmp_path / "beam")), RUNNER)
  assert counters["unreadable"] == 1 and counters["skipped_bad_file"] == 1
  assert 0 < manifest["totals"]["documents"] < 30
  assert len(manifest["plan_errors"]) == 1
  assert "truncated gzip" in manifest["plan_errors"][0]


# ------------------------------------------------------ TFRecord builder ---

@pytest.fixture(scope="module")
def text_shards(corpus_runs, tmp_path_factory):
  """Four corpus shards, and a fifth that is not UTF-8 at line 3."""
  beam_dir, manifest = corpus_runs["beam"]
  names = [s["file"] for s in manifest["shards"]][:4]
  work = tmp_path_factory.mktemp("text_shards")
  paths = []
  for name in names:
    with open(os.path.join(beam_dir, name), "rb") as f:
      (work / name).write_bytes(f.read())
    paths.append(str(work / name))
  bad = work / "zz-bad.txt"
  bad.write_bytes(b"A first sentence.\nAnother one.\nbroken \xff byte\n")
  paths.append(str(bad))
  return sorted(paths)


_OPTIONS = cpd.DataOptions(max_seq_length=64, dupe_factor=2,
                           max_predictions_per_seq=10)


def _records(path):
  return list(tf.io.tf_record_iterator(path))


@pytest.fixture(scope="module")
def tfrecord_runs(text_shards, spm_model_file, tmp_path_factory):
  work = tmp_path_factory.mktemp("tfrecords")
  args = {"vocab_file": None, "spm_model_file": spm_model_file}
  single_out = cpd.sharded_output_files(text_shards, str(work / "single"))
  single = cpd.run_sharded(text_shards, single_out, args, 7, _OPTIONS)
  beam_out = cpd.sharded_output_files(text_shards, str(work / "beam"))
  report, counters = beam_cpd.run(text_shards, beam_out, args, 7, _OPTIONS,
                                  pipeline_args=RUNNER)
  return {"single": (single_out, single), "beam": (beam_out, report),
          "counters": counters, "args": args, "work": work}


def test_beam_tfrecords_equal_single_machine_per_shard(tfrecord_runs):
  single_out, single = tfrecord_runs["single"]
  beam_out, report = tfrecord_runs["beam"]
  assert [r["status"] for r in report] == ["written"] * 4 + ["failed"]
  for i in range(4):
    ours, theirs = _records(beam_out[i]), _records(single_out[i])
    assert len(theirs) == single[i].num_instances > 0
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs  # the same order too: one seeded writer per shard
    assert report[i]["seed"] == cpd.shard_seed(7, i)
  # Seeds differ between shards, so the same text would not repeat masks.
  assert len({r["seed"] for r in report}) == 5


def test_bad_shard_is_counted_and_reported_and_others_written(tfrecord_runs):
  beam_out, report = tfrecord_runs["beam"]
  counters = tfrecord_runs["counters"]
  assert "zz-bad.txt:3: not valid UTF-8" in report[4]["error"]
  assert not os.path.exists(beam_out[4])
  assert counters["shards_failed"] == 1
  assert counters["shards_written"] == 4
  assert counters["instances"] == sum(len(_records(p)) for p in beam_out[:4])
  with open(os.path.join(os.path.dirname(beam_out[0]),
                         beam_cpd.REPORT_NAME), encoding="utf-8") as f:
    assert json.load(f) == report
  assert not [n for n in os.listdir(os.path.dirname(beam_out[0]))
              if "tmp" in n]


def test_rerun_skips_complete_outputs(tfrecord_runs, text_shards):
  beam_out, _ = tfrecord_runs["beam"]
  before = {p: os.stat(p).st_mtime_ns for p in beam_out[:4]}
  report, counters = beam_cpd.run(text_shards, beam_out, tfrecord_runs["args"],
                                  7, _OPTIONS, pipeline_args=RUNNER)
  assert [r["status"] for r in report] == ["skipped"] * 4 + ["failed"]
  assert counters["shards_skipped"] == 4
  assert counters.get("instances", 0) == 0
  assert {p: os.stat(p).st_mtime_ns for p in beam_out[:4]} == before


def test_shard_jobs_reject_colliding_outputs():
  with pytest.raises(cpd.InputError, match="would both write"):
    beam_cpd.shard_jobs(["a/x.txt", "b/x.txt"], ["o/x.tfrecord"] * 2, 1)
  with pytest.raises(cpd.InputError, match="one output file per input"):
    beam_cpd.shard_jobs(["a.txt"], [], 1)


# ------------------------------------------------------------------- CLI ---

def _cli(module, *args):
  return subprocess.run(
      [sys.executable, "-m", module] + list(args), cwd=ROOT,
      capture_output=True, text=True, timeout=300, check=False)


def test_cli_pipeline_options_pass_through_and_exit_status(
    text_shards, spm_model_file, tmp_path):
  # Beam options (--runner, --direct_num_workers) reach Beam; a failed shard
  # gives exit status 1.
  out = tmp_path / "tf"
  proc = _cli("bio.beam.create_pretraining_data",
              "--input_file=%s" % ",".join(text_shards[3:]),
              "--output_dir=%s" % out, "--spm_model_file=" + spm_model_file,
              "--max_seq_length=64", "--dupe_factor=1", "--runner",
              "FnApiRunner", "--direct_num_workers=1")
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "FAILED shard 1: %s:3" % text_shards[4] in proc.stderr
  assert "runner FnApiRunner" in proc.stderr
  assert sorted(os.listdir(out)) == sorted(
      [beam_cpd.REPORT_NAME, os.path.basename(
          cpd.sharded_output_files(text_shards[3:4], str(out))[0])])
  # The corpus command: --strict turns an unreadable input into status 3.
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
  options = common.pipeline_options(rest[1:]).get_all_options()
  assert options["runner"] == "FnApiRunner" and options["num_workers"] == 7
  # Without --runner, the local default that never downloads anything.
  assert common.pipeline_options([]).get_all_options()[
      "runner"] == common.DEFAULT_RUNNER == "FnApiRunner"
