r"""PubMed / PMC corpus preparation as an Apache Beam pipeline.

Writes what `python -m bio.corpus.prepare` writes (shards of one sentence per
line, `manifest.parts/`, `manifest.json`) with an engine that scales past one
machine. Flags this module does not define are Beam pipeline options
(`--runner`, `--project`, `--region`, `--temp_location`, `--num_workers`,
`--setup_file`, ...):

  python -m bio.beam.prepare_corpus --source=pubmed \
      --input='baseline/*.xml.gz,updatefiles/*.xml.gz' \
      --output_dir=corpus/pubmed --runner=DirectRunner \
      --direct_running_mode=multi_processing --direct_num_workers=8

Inputs and --output_dir may be local or on any Beam filesystem (`gs://...`).

The pipeline:
  1. PubMed with --pubmed_dedup: `bio.corpus.pubmed.index_file` lists each file's
     records and DeleteCitations; every event is keyed by PMID and combined
     per PMID, keeping the latest (file order as in bio.corpus.prepare, then
     position in the file). Every other record of that PMID is dropped as
     "superseded" (the latest is a record) or "deleted" (it is a
     DeleteCitation). This is `bio.corpus.pubmed.build_plan`'s rule, computed by
     key, so no worker ever holds the index of the whole corpus.
  2. Each unit of work (`bio.corpus.prepare.make_units`: one file, or a group
     of small PMC files) with its drop map goes to
     `bio.corpus.prepare.process_unit`, which reads, cleans, splits and
     shards it into a scratch directory on the worker; remote inputs are
     first copied there. Shards and the unit's part record are then copied
     into --output_dir under a temporary name and renamed into place.
  3. The parts of all units become manifest.json (`bio.corpus.shards`).

Units, shard names, part records (fingerprints included) and the manifest
are those of the single-machine command, so a later `bio.corpus.prepare`
run on a local output directory takes the units as complete.

A file or record that cannot be read is counted (Beam counters
`skipped_<reason>` and `unreadable`), logged with its name and the reason,
listed in the manifest, and the pipeline goes on; --strict turns that into
exit status 3. Other exceptions fail the work item, which the runner retries.
"""
import json
import os
import posixpath
import sys
import time

from absl import app
from absl import flags
from absl import logging
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from bio.beam import common
from bio.corpus import pmc
from bio.corpus import prepare
from bio.corpus import pubmed
from bio.corpus import shards

NAMESPACE = "bioalbert.prepare_corpus"
# Event kinds; at the same position a DeleteCitation seen after k records
# sorts before record k, which comes after it in the file.
_DELETION = 0
_RECORD = 1

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """bio.corpus.prepare's corpus flags (on `flag_values`, the global FLAGS by
  default). --num_workers and every other pipeline option are left
  undefined, so that they reach Beam."""
  prepare.define_corpus_flags(flag_values)


# ------------------------------------------------------------------ files ---

def order_key(path):
  """The processing order of input files: bio.corpus.prepare's."""
  return prepare.file_order_key(path)


def _wanted(path, source):
  name = posixpath.basename(path)
  if source == "pmc":
    return pmc.is_input_file(name)
  return name.lower().endswith((".xml", ".xml.gz"))


def expand_inputs(patterns, source, output_dir=None):
  """Sorted input files of comma-separated globs, local or remote.

  Local patterns (globs with ** or directories) are expanded by
  `bio.corpus.prepare.expand_inputs`; remote ones by Beam's filesystems.
  Files under `output_dir` are never inputs.
  """
  parts = [p.strip() for p in patterns.split(",") if p.strip()]
  local = [p for p in parts if not common.is_remote(p)]
  files = set()
  if local:
    exclude = output_dir
    if output_dir and common.is_remote(output_dir):
      exclude = None
    files.update(prepare.expand_inputs(",".join(local), source,
                                              exclude))
  for pattern in [p for p in parts if common.is_remote(p)]:
    try:
      metadata = FileSystems.match([pattern])[0].metadata_list
    except Exception as e:  # pylint: disable=broad-except
      raise app.UsageError("--input: cannot list %r: %s" % (pattern, e))
    matches = [m.path for m in metadata if _wanted(m.path, source)]
    if not matches:
      raise app.UsageError("--input: nothing matches %r" % pattern)
    files.update(matches)
  if output_dir and common.is_remote(output_dir):
    inside = output_dir.rstrip("/") + "/"
    files = {p for p in files if not p.startswith(inside)}
  if not files:
    raise app.UsageError("--input: no input files outside --output_dir")
  return sorted(files, key=order_key)


# ------------------------------------------------------- PubMed dedup ---

class IndexFileFn(beam.DoFn):
  """File rank -> (pmid, (file rank, position, kind)) per record/deletion.

  `files` are the inputs in processing order; events name a file by its
  rank there, which orders them as bio.corpus.prepare orders files. A file
  that ends early (damaged) also goes to the "errors" output as
  (rank, "path: reason"), as bio.corpus.prepare's plan errors.
  """

  def __init__(self, files):
    super().__init__()
    self._files = list(files)
    self.records = Metrics.counter(NAMESPACE, "indexed_records")
    self.deletions = Metrics.counter(NAMESPACE, "indexed_deletions")

  def process(self, rank):
    path = self._files[rank]
    with common.ScratchDir() as scratch:
      local = common.stage_file(path, scratch) if common.is_remote(path) else path
      index = pubmed.index_file(local)
    if index.error:
      yield beam.pvalue.TaggedOutput(
          "errors", (rank, "%s: %s" % (path, index.error)))
    for pmid, event in index_events(rank, index):
      (self.records if event[2] == _RECORD else self.deletions).inc()
      yield pmid, event


def index_events(rank, index):
  """(pmid, (rank, position, kind)) of the `pubmed.FileIndex` of the file
  of that rank in processing order."""
  for position, pmid in enumerate(index.pmids):
    if pmid != pubmed.NO_PMID:
      yield pmid, (rank, position, _RECORD)
  for seen, pmid in index.deletions:
    yield pmid, (rank, seen, _DELETION)


class LatestEventFn(beam.CombineFn):
  """Per PMID: (its latest event, the earlier record events it replaces).

  Events are (file rank, position, kind) tuples, ordered as they occur in
  the input. Earlier DeleteCitations are forgotten: they drop nothing
  on their own.
  """

  def create_accumulator(self):
    return (None, [])

  @staticmethod
  def _merge(a, b):
    (latest_a, older_a), (latest_b, older_b) = a, b
    if latest_a is None or latest_b is None:
      return (latest_b if latest_a is None else latest_a, older_a + older_b)
    latest, other = ((latest_a, latest_b) if latest_a > latest_b
                     else (latest_b, latest_a))
    older = older_a + older_b
    if other[2] == _RECORD:
      older = older + [other]
    return (latest, older)

  def add_input(self, accumulator, event):
    return self._merge(accumulator, (event, []))

  def merge_accumulators(self, accumulators):
    result = self.create_accumulator()
    for accumulator in accumulators:
      result = self._merge(result, accumulator)
    return result

  def extract_output(self, accumulator):
    return accumulator


def dropped_records(element, files):
  """(pmid, (latest, older)) -> (path, (position, reason)) per older record;
  `files` are the inputs in processing order."""
  _, (latest, older) = element
  reason = "superseded" if latest[2] == _RECORD else "deleted"
  for rank, position, _ in older:
    yield files[rank], (position, reason)


# ---------------------------------------------------------------- units ---

class ProcessUnitFn(beam.DoFn):
  """(unit, drop map or None) -> its part record; writes its shards."""

  def __init__(self, settings):
    super().__init__()
    self._settings = settings
    self.units = Metrics.counter(NAMESPACE, "units")
    self.shards = Metrics.counter(NAMESPACE, "shards")
    self.documents = Metrics.counter(NAMESPACE, "documents")
    self.sentences = Metrics.counter(NAMESPACE, "sentences")
    self.words = Metrics.counter(NAMESPACE, "words")
    self.bytes = Metrics.counter(NAMESPACE, "output_bytes")
    self.unreadable = Metrics.counter(NAMESPACE, "unreadable")
    self.seconds = Metrics.distribution(NAMESPACE, "unit_milliseconds")

  def process(self, element):
    unit, drop = element
    output_dir = self._settings["output_dir"]
    start = time.time()
    with common.ScratchDir() as scratch:
      local_of = {}
      for i, path in enumerate(unit["inputs"]):
        if common.is_remote(path):
          directory = os.path.join(scratch, "in%d" % i)
          os.mkdir(directory)
          local_of[path] = common.stage_file(path, directory)
        else:
          local_of[path] = path
      original_of = {local: path for path, local in local_of.items()}
      out = os.path.join(scratch, "out")
      os.mkdir(out)
      spec = {
          "unit": unit["unit"],
          "inputs": [local_of[p] for p in unit["inputs"]],
          "settings": dict(self._settings, output_dir=out),
          "drop": drop,
          "fingerprint": prepare.unit_fingerprint(
              self._settings, drop),
      }
      part = prepare.process_unit(spec)
      part = _with_original_paths(part, original_of, unit["inputs"])
      for shard in part["shards"]:
        common.publish_file(os.path.join(out, shard["file"]),
                     FileSystems.join(output_dir, shard["file"]))
      _remove_stale_shards(output_dir, unit["unit"],
                           {s["file"] for s in part["shards"]})
      local_part = os.path.join(scratch, "part.json")
      shards.write_json(local_part, part)
      common.publish_file(local_part, FileSystems.join(
          output_dir, shards.PARTS_DIR, unit["unit"] + ".json"))
    self._count(part, time.time() - start)
    yield part

  def _count(self, part, seconds):
    self.units.inc()
    words = 0
    for shard in part["shards"]:
      self.shards.inc()
      self.documents.inc(shard["documents"])
      self.sentences.inc(shard["sentences"])
      self.words.inc(shard["words"])
      self.bytes.inc(shard["bytes"])
      words += shard["words"]
    for reason, count in part["skipped"].items():
      Metrics.counter(NAMESPACE, "skipped_" + reason).inc(count)
    for error in part["errors"]:
      self.unreadable.inc()
      logging.warning("unreadable: %s%s: %s", error["file"],
                      (" [%s]" % error["member"]) if "member" in error
                      else "", error["reason"])
    self.seconds.update(int(seconds * 1000))
    logging.info("unit %s: %d documents, %d words in %d shards, %.1fs "
                 "(%.0f words/s)", part["unit"],
                 sum(s["documents"] for s in part["shards"]), words,
                 len(part["shards"]), seconds, words / max(seconds, 1e-9))


def _with_original_paths(part, original_of, inputs):
  """The part record with staged local copies named by their real paths."""
  def real(path):
    return original_of.get(path, path)
  part = dict(part, inputs=list(inputs))
  part["shards"] = [dict(s, sources=[real(p) for p in s["sources"]])
                    for s in part["shards"]]
  part["errors"] = [dict(e, file=real(e["file"])) for e in part["errors"]]
  return part


def _remove_stale_shards(output_dir, unit, keep):
  """Deletes shards of `unit` left by an earlier run that wrote more."""
  pattern = FileSystems.join(output_dir, "%s-[0-9][0-9][0-9][0-9][0-9]%s" % (
      unit, shards.SHARD_SUFFIX))
  try:
    metadata = FileSystems.match([pattern])[0].metadata_list
  except Exception:  # pylint: disable=broad-except
    return  # nothing there yet
  stale = [m.path for m in metadata
           if FileSystems.split(m.path)[1] not in keep]
  if stale:
    FileSystems.delete(stale)


def write_manifest(parts, plan_errors, unit_order, header, output_dir):
  """Writes manifest.json from all part records; returns its totals."""
  position = {name: i for i, name in enumerate(unit_order)}
  ordered = sorted(parts, key=lambda part: position[part["unit"]])
  header = dict(header, plan_errors=[e for _, e in sorted(plan_errors)])
  with common.ScratchDir() as scratch:
    local = os.path.join(scratch, shards.MANIFEST)
    manifest = shards.write_manifest(local, ordered, header)
    common.publish_file(local, FileSystems.join(output_dir, shards.MANIFEST))
  return manifest["totals"]


# ------------------------------------------------------------- pipeline ---

def build_pipeline(pipeline, settings, files):
  """Adds the corpus preparation of `files` to `pipeline`.

  Returns the PCollection of the manifest totals (one element).
  """
  units = prepare.make_units(files, settings["source"],
                                    settings["unit_bytes"])
  dedup = settings["source"] == "pubmed" and settings["dedup"]
  if dedup:
    ranks = (pipeline
             | "Files" >> beam.Create(range(len(files)))
             | "SpreadFiles" >> beam.Reshuffle())
    indexed = ranks | "Index" >> beam.ParDo(IndexFileFn(files)).with_outputs(
        "errors", main="events")
    drops = (indexed.events
             | "LatestPerPmid" >> beam.CombinePerKey(LatestEventFn())
             | "Dropped" >> beam.FlatMap(dropped_records, files))
    # PubMed units are single files: key each unit by its file.
    keyed_units = pipeline | "Units" >> beam.Create(
        [(u["inputs"][0], u) for u in units])
    work = ({"unit": keyed_units, "drop": drops}
            | "JoinDrops" >> beam.CoGroupByKey()
            | "DropMaps" >> beam.FlatMap(
                lambda kv: [(u, dict(kv[1]["drop"])) for u in kv[1]["unit"]]))
    plan_errors = indexed.errors
  else:
    work = (pipeline
            | "Units" >> beam.Create([(u, None) for u in units])
            | "SpreadUnits" >> beam.Reshuffle())
    plan_errors = pipeline | "NoPlanErrors" >> beam.Create([])
  parts = work | "ProcessUnits" >> beam.ParDo(ProcessUnitFn(settings))
  header = {"format": "bioalbert-corpus/1", "source": settings["source"],
            "settings": dict(settings), "input_files": len(files)}
  return (parts
          | "AllParts" >> beam.combiners.ToList()
          | "Manifest" >> beam.Map(
              write_manifest, beam.pvalue.AsList(plan_errors),
              [u["unit"] for u in units], header, settings["output_dir"]))


def run(settings, pipeline_args=()):
  """Runs the pipeline to completion; returns (manifest, counters)."""
  options = common.pipeline_options(pipeline_args)
  FileSystems.set_options(options)
  if not common.is_remote(settings["output_dir"]):
    prepare.make_output_dir(settings["output_dir"])
  files = expand_inputs(settings["input"], settings["source"],
                        settings["output_dir"])
  logging.info("%d input files; runner %s", len(files),
               options.get_all_options()["runner"])
  start = time.time()
  pipeline = beam.Pipeline(options=options)
  build_pipeline(pipeline, settings, files)
  result = pipeline.run()
  result.wait_until_finish()
  values = common.counters(result, NAMESPACE)
  manifest = common.read_json(FileSystems.join(settings["output_dir"],
                                         shards.MANIFEST))
  elapsed = time.time() - start
  totals = manifest["totals"]
  logging.info("done in %.1fs: %d documents, %d sentences, %d words in %d "
               "shards (%.0f words/s); skipped %s; %d unreadable inputs",
               elapsed, totals["documents"], totals["sentences"],
               totals["words"], totals["shards"],
               totals["words"] / max(elapsed, 1e-9), totals["skipped"],
               totals["errors"])
  for error in manifest["errors"]:
    logging.warning("unreadable: %s%s: %s", error["file"],
                    (" [%s]" % error["member"]) if "member" in error else "",
                    error["reason"])
  logging.info("Beam counters: %s", json.dumps(values, sort_keys=True))
  return manifest, values


def settings_from_flags(fv=FLAGS):
  """Validated settings (bio.corpus.prepare's keys) from parsed flags."""
  if fv.unit_bytes < 1:
    raise app.UsageError("--unit_bytes must be at least 1")
  output_dir = fv.output_dir
  if not common.is_remote(output_dir):
    output_dir = os.path.abspath(output_dir)
  settings = prepare.corpus_settings(fv, output_dir)
  settings["engine"] = "beam"
  return settings


def main(argv):
  settings = settings_from_flags()
  manifest, _ = run(settings, argv[1:])
  if FLAGS.strict and manifest["totals"]["errors"]:
    sys.exit(3)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["source", "input", "output_dir"])
  app.run(main, flags_parser=common.parse_flags)
