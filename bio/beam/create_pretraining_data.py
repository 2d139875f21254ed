r"""ALBERT pretraining TFRecords, one file per input shard, as a Beam pipeline.

The Beam form of `create_pretraining_data.py`'s per-shard mode: shard i of
the input list (globs expanded and sorted as there, repeats dropped) is
turned into its own TFRecord file by `albert.create_pretraining_data.
process_shard` with seed `shard_seed(--random_seed, i)`, so each output is
byte-for-byte the single-machine one. Outputs appear atomically (temporary
name, then rename) and an existing output is skipped, so a retried work item
or a re-run does no harm. Flags this module does not define are Beam
pipeline options:

  python -m bio.beam.create_pretraining_data \
      --input_file='gs://BUCKET/corpus/pubmed/*.txt' \
      --output_dir=gs://BUCKET/tfrecords/pubmed \
      --spm_model_file=gs://BUCKET/bio30k.model --max_seq_length=512 \
      --runner=DataflowRunner --project=PROJECT --region=REGION \
      --temp_location=gs://BUCKET/tmp --setup_file=./setup.py

Counts are Beam metrics (namespace bioalbert.create_pretraining_data):
shards_written, shards_skipped, shards_failed, instances, input_bytes, and
the distribution instances_per_shard. A shard that cannot be used (not
UTF-8, no text) is counted, logged with its file and line, listed in the
JSON report (--report_file) and leaves no output; the others go on, and the
exit status is then 1.
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import create_pretraining_data as cpd
from albert import tokenization
from bio.beam import common

NAMESPACE = "bioalbert.create_pretraining_data"
REPORT_NAME = "beam_report.json"

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """create_pretraining_data.py's shared flags (`cpd.define_data_flags`:
  input/output, tokenizer, seed, masking; same defaults) and --report_file."""
  cpd.define_data_flags(flag_values)
  flags.DEFINE_string("report_file", None,
                      "JSON list of what happened to every shard (default: "
                      "%s beside the first output)." % REPORT_NAME,
                      flag_values=flag_values)


def shard_jobs(input_files, output_files, random_seed):
  """(shard index, input, output, seed) per shard, numbered over the whole
  ordered input list as the single-machine per-shard mode numbers them."""
  if len(input_files) != len(output_files):
    raise cpd.InputError("one output file per input shard is needed: got %d "
                         "inputs and %d outputs" % (len(input_files),
                                                    len(output_files)))
  writer_of = {}
  for input_file, output_file in zip(input_files, output_files):
    if output_file in writer_of:
      raise cpd.InputError("inputs %s and %s would both write %s" % (
          writer_of[output_file], input_file, output_file))
    writer_of[output_file] = input_file
  return [(index, input_file, output_file, cpd.shard_seed(random_seed, index))
          for index, (input_file, output_file)
          in enumerate(zip(input_files, output_files))]


class CreateShardFn(beam.DoFn):
  """(index, input, output, seed) -> a result dict; writes the output.

  Bad input (cpd.InputError) makes a "failed" result; any other exception
  fails the work item so that the runner retries it.
  """

  def __init__(self, tokenizer_args, options, skip_existing=True):
    super().__init__()
    self._tokenizer_args = dict(tokenizer_args)
    self._options = options
    self._skip_existing = skip_existing
    self._tokenizer = None
    self.written = Metrics.counter(NAMESPACE, "shards_written")
    self.skipped = Metrics.counter(NAMESPACE, "shards_skipped")
    self.failed = Metrics.counter(NAMESPACE, "shards_failed")
    self.instances = Metrics.counter(NAMESPACE, "instances")
    self.input_bytes = Metrics.counter(NAMESPACE, "input_bytes")
    self.per_shard = Metrics.distribution(NAMESPACE, "instances_per_shard")

  def setup(self):
    self._tokenizer = tokenization.FullTokenizer(**self._tokenizer_args)

  def process(self, job):
    index, input_file, output_file, seed = job
    start = time.time()
    result = {"shard_index": index, "input_file": input_file,
              "output_file": output_file, "seed": seed, "instances": 0,
              "error": None}
    try:
      count = cpd.process_shard(input_file, output_file, self._tokenizer,
                                seed, self._options,
                                skip_existing=self._skip_existing)
    except cpd.InputError as e:
      self.failed.inc()
      logging.error("shard %d failed: %s", index, e)
      result.update(status="failed", error=str(e),
                    seconds=round(time.time() - start, 3))
      yield result
      return
    seconds = time.time() - start
    if count is None:
      self.skipped.inc()
      result.update(status="skipped", seconds=round(seconds, 3))
      yield result
      return
    size = tf.io.gfile.stat(input_file).length
    self.written.inc()
    self.instances.inc(count)
    self.input_bytes.inc(size)
    self.per_shard.update(count)
    logging.info("shard %d: %d instances in %.1fs (%.1f instances/s, "
                 "%.2f MB/s of input) -> %s", index, count, seconds,
                 count / max(seconds, 1e-9), size / 1e6 / max(seconds, 1e-9),
                 output_file)
    result.update(status="written", instances=count,
                  seconds=round(seconds, 3))
    yield result


def write_report(results, report_file):
  """Writes the per-shard results (ordered by shard index) as JSON."""
  ordered = sorted(results, key=lambda r: r["shard_index"])
  text = json.dumps(ordered, indent=1, sort_keys=True) + "\n"
  with common.ScratchDir() as scratch:
    local = os.path.join(scratch, "report.json")
    with open(local, "w", encoding="utf-8") as f:
      f.write(text)
    common.publish_file(local, report_file)
  return len(ordered)


def build_pipeline(pipeline, jobs, tokenizer_args, options, report_file,
                   skip_existing=True):
  """Adds the shard jobs to `pipeline`; returns the results PCollection."""
  results = (pipeline
             | "Shards" >> beam.Create(jobs)
             # Without it, the runner may fuse all shards into one worker.
             | "Spread" >> beam.Reshuffle()
             | "CreateShards" >> beam.ParDo(
                 CreateShardFn(tokenizer_args, options, skip_existing)))
  _ = (results
       | "AllResults" >> beam.combiners.ToList()
       | "Report" >> beam.Map(write_report, report_file))
  return results


def default_report_file(output_files):
  return FileSystems.join(FileSystems.split(output_files[0])[0], REPORT_NAME)


def run(input_files, output_files, tokenizer_args, random_seed,
        options=cpd.DataOptions(), report_file=None, pipeline_args=(),
        skip_existing=True):
  """Runs the pipeline to completion; returns (report list, counters)."""
  cpd.validate_options(options)
  jobs = shard_jobs(input_files, output_files, random_seed)
  report_file = report_file or default_report_file(output_files)
  # Fail here, not on every worker, if the tokenizer cannot be built.
  tokenization.FullTokenizer(**tokenizer_args)
  beam_options = common.pipeline_options(pipeline_args)
  logging.info("%d shards; runner %s; report %s", len(jobs),
               beam_options.get_all_options()["runner"], report_file)
  start = time.time()
  pipeline = beam.Pipeline(options=beam_options)
  build_pipeline(pipeline, jobs, tokenizer_args, options, report_file,
                 skip_existing)
  result = pipeline.run()
  result.wait_until_finish()
  values = common.counters(result, NAMESPACE)
  with FileSystems.open(
      report_file, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    report = json.loads(f.read().decode("utf-8"))
  elapsed = time.time() - start
  logging.info("done in %.1fs: %d instances in %d new files (%.1f "
               "instances/s); %d skipped (already complete); %d failed",
               elapsed, values.get("instances", 0),
               values.get("shards_written", 0),
               values.get("instances", 0) / max(elapsed, 1e-9),
               values.get("shards_skipped", 0),
               values.get("shards_failed", 0))
  for entry in report:
    if entry["status"] == "failed":
      logging.error("FAILED shard %d: %s", entry["shard_index"],
                    entry["error"])
  logging.info("Beam counters: %s", json.dumps(values, sort_keys=True))
  return report, values


def main(argv):
  logging.set_verbosity(logging.INFO)
  fv = FLAGS
  if not fv.vocab_file and not fv.spm_model_file:
    raise app.UsageError("Pass --spm_model_file (or --vocab_file).")
  if bool(fv.output_dir) == bool(fv.output_file):
    raise app.UsageError("Pass exactly one of --output_dir and --output_file.")
  options = cpd.options_from_flags(fv)
  try:
    cpd.validate_options(options)
  except ValueError as e:
    raise app.UsageError(str(e))
  tokenizer_args = common_flags.TokenizerOptions.from_flags(fv).as_kwargs()
  try:
    # Per-shard numbering: a file named by two patterns is one shard.
    input_files = list(dict.fromkeys(
        cpd.expand_input_patterns(fv.input_file)))
    output_files = cpd.output_files_of(input_files, fv.output_file,
                                       fv.output_dir)
    report, _ = run(input_files, output_files, tokenizer_args,
                    fv.random_seed, options, fv.report_file, argv[1:])
  except (ValueError, tf.errors.OpError, OSError) as e:
    # Bad input (cpd.InputError is a ValueError) or an unreadable model.
    logging.error("%s", e)
    sys.exit(1)
  if any(entry["status"] == "failed" for entry in report):
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("input_file")
  app.run(main, flags_parser=common.parse_flags)
