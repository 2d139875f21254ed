r"""Tags every file matching a glob with a NER SavedModel, as a Beam pipeline.

Each input file (PubMed XML, PMC .nxml, PubTator, BioC XML/JSON, text: the
inputs of bio.serving.tag) is one work item, tagged by the very code of
bio.serving.tag (`tag.tag_file`: same readers, batches, formats) into one
output shard `OUTPUT_DIR/<input name>.<format extension>`. The SavedModel is
loaded once per worker (`DoFn.setup`; a gs:// model is copied to the
worker's scratch disk first). Outputs appear atomically (temporary name,
then rename); an output that exists is never overwritten: its input is
skipped, so a re-run after a failure tags only what is missing. Flags this
module does not define are Beam pipeline options:

  python -m bio.beam.tag --saved_model=gs://BUCKET/export/ncbi \
      --input='gs://BUCKET/pubmed/baseline/*.xml.gz' \
      --output_dir=gs://BUCKET/tagged/ncbi --format=bioc \
      --runner=DataflowRunner --project=PROJECT --region=REGION \
      --temp_location=gs://BUCKET/tmp --setup_file=./setup.py

Locally the default runner is FnApiRunner (bio.beam.common); add
`--direct_num_workers=2 --direct_running_mode=multi_processing` to tag two
files at once. Dataflow, Flink (--runner=FlinkRunner) and Spark
(--runner=SparkRunner) take the usual Beam flags; they are not exercised by
the tests (no cluster here).

Counts are Beam metrics (namespace bioalbert.tag): documents, entities,
bad_documents (malformed documents, skipped and logged with file, document
id and reason), files_written, files_skipped, files_failed (no document of
the file could be read). --strict fails the pipeline at the first malformed
document instead. A JSON report (--report_file, default OUTPUT_DIR/
tag_report.json) lists what happened to every file; the exit status is 1
when any document or file was bad.
"""
import json
import os
import posixpath
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from bio.beam import common
from bio.serving import documents
from bio.serving import outputs
from bio.serving import tag

NAMESPACE = "bioalbert.tag"
REPORT_NAME = "tag_report.json"
_INPUT_SUFFIXES = (".gz", ".xml", ".nxml", ".json", ".jsonl", ".txt",
                   ".pubtator", ".bioc")

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  flags.DEFINE_string("saved_model", None, "A bio.serving.export SavedModel "
                      "(local or gs://).", flag_values=flag_values)
  flags.DEFINE_string("input", None, "Comma-separated input files or globs "
                      "(local or gs://).", flag_values=flag_values)
  flags.DEFINE_string("output_dir", None, "Where the output shards go.",
                      flag_values=flag_values)
  flags.DEFINE_enum("format", "bioc", sorted(outputs.FORMATS),
                    "Output format.", flag_values=flag_values)
  flags.DEFINE_enum("input_format", "auto", ["auto"] + list(
      documents.FORMATS), "Input format; auto decides per file.",
                    flag_values=flag_values)
  flags.DEFINE_integer("batch_size", 16, "Documents per model call.",
                       lower_bound=1, flag_values=flag_values)
  flags.DEFINE_bool("strict", False, "Fail at the first malformed document.",
                    flag_values=flag_values)
  flags.DEFINE_string("report_file", None, "JSON report (default: %s in "
                      "--output_dir)." % REPORT_NAME, flag_values=flag_values)


def expand_inputs(patterns):
  """Sorted, distinct files matching comma-separated patterns."""
  found = []
  for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
      raise documents.InputError("--input %s matches no file" % pattern)
    found.extend(m.path for m in matches)
  return sorted(set(found))


def output_name(input_path, output_format):
  """pubmed26n0001.xml.gz -> pubmed26n0001.xml (bioc) / .jsonl / ..."""
  name = posixpath.basename(input_path)
  while name.lower().endswith(_INPUT_SUFFIXES) and "." in name[1:]:
    name = name[:name.rindex(".")]
  return name + outputs.FORMATS[output_format].extension


def file_jobs(input_files, output_dir, output_format):
  """(input, output) per file; two inputs may not share an output."""
  writer_of = {}
  jobs = []
  for path in input_files:
    output = FileSystems.join(output_dir, output_name(path, output_format))
    if output in writer_of:
      raise documents.InputError("inputs %s and %s would both write %s" % (
          writer_of[output], path, output))
    writer_of[output] = path
    jobs.append((path, output))
  return jobs


def stage_dir(path, directory):
  """A local copy of a remote directory tree (a SavedModel)."""
  root = path.rstrip("/")
  for meta in FileSystems.match([root + "/**"])[0].metadata_list:
    relative = meta.path[len(root) + 1:]
    local = os.path.join(directory, *relative.split("/"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    common.stage_file(meta.path, os.path.dirname(local))
  return directory


class TagFileFn(beam.DoFn):
  """(input, output) -> a result dict; writes the output shard.

  A file none of whose documents can be read makes a "failed" result; any
  other exception (a --strict stop included) fails the work item.
  """

  def __init__(self, saved_model, output_format, input_format="auto",
               batch_size=16, strict=False):
    super().__init__()
    self._saved_model = saved_model
    self._format = output_format
    self._input_format = input_format
    self._batch_size = batch_size
    self._strict = strict
    self._scratch = None
    self._tagger = None
    self.counters = {name: Metrics.counter(NAMESPACE, name) for name in (
        "documents", "entities", "bad_documents", "files_written",
        "files_skipped", "files_failed")}

  def setup(self):
    self._scratch = tempfile.mkdtemp(prefix="bioalbert-tag-")
    model = self._saved_model
    if common.is_remote(model):
      model = stage_dir(model, os.path.join(self._scratch, "model"))
    self._tagger = tag.load_model(model)

  def teardown(self):
    if self._scratch:
      shutil.rmtree(self._scratch, ignore_errors=True)

  def process(self, job):
    input_path, output_path = job
    result = {"input": input_path, "output": output_path, "documents": 0,
              "entities": 0, "bad_documents": [], "error": None}
    if FileSystems.exists(output_path):
      self.counters["files_skipped"].inc()
      yield dict(result, status="skipped")
      return
    start = time.time()
    work = tempfile.mkdtemp(dir=self._scratch)
    try:
      result = self._tag(input_path, output_path, work, result)
    finally:
      shutil.rmtree(work, ignore_errors=True)
    logging.info("%s: %d documents, %d entities in %.1fs", input_path,
                 result["documents"], result["entities"], time.time() - start)
    yield result

  def _tag(self, input_path, output_path, work, result):
    local_in = input_path
    if common.is_remote(input_path):
      local_in = common.stage_file(input_path, work)
    local_out = os.path.join(work, posixpath.basename(output_path))
    problems = []
    try:
      docs, ents = tag.tag_file(
          self._tagger, local_in, local_out, self._format, self._input_format,
          self._batch_size, log_every=0, strict=self._strict,
          problems=problems)
    except tag.TagError as e:
      if self._strict:
        raise
      self.counters["files_failed"].inc()
      self.counters["bad_documents"].inc(len(problems))
      logging.error("%s: %s", input_path, e)
      return dict(result, status="failed", error=str(e),
                  bad_documents=[[p.doc_id, p.reason] for p in problems])
    common.publish_file(local_out, output_path)
    self.counters["files_written"].inc()
    self.counters["documents"].inc(docs)
    self.counters["entities"].inc(ents)
    self.counters["bad_documents"].inc(len(problems))
    return dict(result, status="written", documents=docs, entities=ents,
                bad_documents=[[p.doc_id, p.reason] for p in problems])


def write_report(results, report_file):
  """Writes the per-file results (ordered by input) as JSON."""
  ordered = sorted(results, key=lambda r: r["input"])
  with common.ScratchDir() as scratch:
    local = os.path.join(scratch, "report.json")
    with open(local, "w", encoding="utf-8") as f:
      json.dump(ordered, f, indent=1, sort_keys=True)
      f.write("\n")
    common.publish_file(local, report_file)
  return len(ordered)


def build_pipeline(pipeline, jobs, fn, report_file):
  """Adds the file jobs to `pipeline`; returns the results PCollection."""
  results = (pipeline
             | "Files" >> beam.Create(jobs)
             # Without it, the runner may fuse all files into one worker.
             | "Spread" >> beam.Reshuffle()
             | "Tag" >> beam.ParDo(fn))
  _ = (results
       | "AllResults" >> beam.combiners.ToList()
       | "Report" >> beam.Map(write_report, report_file))
  return results


def run(input_patterns, output_dir, saved_model, output_format="bioc",
        input_format="auto", batch_size=16, strict=False, report_file=None,
        pipeline_args=()):
  """Runs the pipeline to completion; returns (report list, counters)."""
  jobs = file_jobs(expand_inputs(input_patterns), output_dir, output_format)
  if not common.is_remote(output_dir):
    os.makedirs(output_dir, exist_ok=True)
  report_file = report_file or FileSystems.join(output_dir, REPORT_NAME)
  beam_options = common.pipeline_options(pipeline_args)
  logging.info("%d files; runner %s; report %s", len(jobs),
               beam_options.get_all_options()["runner"], report_file)
  pipeline = beam.Pipeline(options=beam_options)
  fn = TagFileFn(saved_model, output_format, input_format, batch_size, strict)
  build_pipeline(pipeline, jobs, fn, report_file)
  start = time.time()
  result = pipeline.run()
  result.wait_until_finish()
  values = common.counters(result, NAMESPACE)
  report = common.read_json(report_file)
  elapsed = time.time() - start
  logging.info("done in %.1fs: %d documents (%.1f documents/s), %d "
               "entities; %d files written, %d skipped, %d failed; %d bad "
               "documents", elapsed, values.get("documents", 0),
               values.get("documents", 0) / max(elapsed, 1e-9),
               values.get("entities", 0), values.get("files_written", 0),
               values.get("files_skipped", 0),
               values.get("files_failed", 0),
               values.get("bad_documents", 0))
  return report, values


def main(argv):
  logging.set_verbosity(logging.INFO)
  for name in ("saved_model", "input", "output_dir"):
    if not FLAGS[name].value:
      raise app.UsageError("--%s is required" % name)
  if not common.is_remote(FLAGS.saved_model) and not os.path.exists(
      os.path.join(FLAGS.saved_model, "saved_model.pb")):
    sys.stderr.write("bio.beam.tag: error: %s is not a SavedModel (no "
                     "saved_model.pb)\n" % FLAGS.saved_model)
    sys.exit(1)
  try:
    report, values = run(FLAGS.input, FLAGS.output_dir, FLAGS.saved_model,
                         FLAGS.format, FLAGS.input_format, FLAGS.batch_size,
                         FLAGS.strict, FLAGS.report_file, argv[1:])
  except (documents.InputError, OSError) as e:
    sys.stderr.write("bio.beam.tag: error: %s\n" % e)
    sys.exit(1)
  if values.get("bad_documents") or any(
      r["status"] == "failed" for r in report):
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=common.parse_flags)
