"""Beam pipelines (local FnApiRunner) against the single-machine commands.

  python bench/bench_beam.py [--copies=4] [--workers=1,2] [--repeat=1]

Same input for both engines: the shared PubMed files, each linked --copies
times under new names. Corpus preparation runs with PubMed dedup off (the
copies repeat PMIDs, so with it on nearly everything would be dropped) and
then on (the whole pipeline: index pass, per-PMID combine, extraction).
The TFRecord builder then runs over the shards that came out, with a
1000-piece SentencePiece model trained on them. For each, the wall time,
the rate and the Beam/single-machine time ratio (the Beam overhead) are
printed. N workers means `--num_workers=N` for the single-machine commands
and `--direct_running_mode=multi_processing --direct_num_workers=N` for
Beam (N=1: in-process). A benchmark, not a test; needs apache_beam.
"""
import argparse
import glob
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
# Beam's worker processes (multi_processing mode) import bio/ and albert/.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
              if p])

from absl import logging  # pylint: disable=wrong-import-position

from albert import create_pretraining_data as cpd  # pylint: disable=wrong-import-position
from albert import train_spm  # pylint: disable=wrong-import-position
from bio.beam import create_pretraining_data as beam_cpd  # pylint: disable=wrong-import-position
from bio.beam import prepare_corpus as beam_prepare_corpus  # pylint: disable=wrong-import-position
from bio import paths  # pylint: disable=wrong-import-position
from bio.corpus import prepare  # pylint: disable=wrong-import-position


def _replicate(files, copies, directory):
  os.makedirs(directory)
  for k in range(copies):
    for path in files:
      os.symlink(path, os.path.join(directory, "c%03d_%s" % (
          k, os.path.basename(path))))
  return directory


def _corpus_settings(input_dir, output_dir, workers, dedup):
  return {
      "source": "pubmed", "input": input_dir, "output_dir": output_dir,
      "num_workers": workers, "shard_docs": 200, "shard_bytes": 0,
      "min_line_chars": 20, "abstract_labels": False, "dedup": dedup,
      "plan": None, "plan_only": False, "pmc_captions": False,
      "pmc_section_titles": False, "pmc_txt_front": False,
      "unit_bytes": 1 << 20, "num_hosts": 1, "host_index": 0,
      "progress_secs": 3600,
  }


def _beam_args(workers):
  args = ["--runner=FnApiRunner"]
  if workers > 1:
    args += ["--direct_running_mode=multi_processing",
             "--direct_num_workers=%d" % workers]
  return args


REPEAT = [1]


def _timed(fn, output_dir):
  """fn()'s value and its best wall time over REPEAT runs (the machine may
  be shared: the fastest run is the least disturbed one). `output_dir` is
  removed before each run, so that no run skips finished work."""
  best = None
  for _ in range(REPEAT[0]):
    shutil.rmtree(output_dir, ignore_errors=True)
    start = time.time()
    value = fn()
    seconds = time.time() - start
    best = seconds if best is None else min(best, seconds)
  return value, best


def _line(what, workers, seconds, amount, unit, baseline=None):
  ratio = " (x%.2f the single-machine time)" % (seconds / baseline) if (
      baseline) else ""
  print("  %-28s workers=%d: %7.2fs, %9.0f %s/s%s" % (
      what, workers, seconds, amount / seconds, unit, ratio))


def bench_corpus(input_dir, scratch, workers, dedup):
  tag = "dedup" if dedup else "nodedup"
  single_dir = os.path.join(scratch, "single-%s-%d" % (tag, workers))
  beam_dir = os.path.join(scratch, "beam-%s-%d" % (tag, workers))
  single, single_s = _timed(lambda: prepare.run(
      _corpus_settings(input_dir, single_dir, workers, dedup),
      report=lambda msg: None), single_dir)
  (manifest, _), beam_s = _timed(lambda: beam_prepare_corpus.run(
      _corpus_settings(input_dir, beam_dir, workers, dedup),
      _beam_args(workers)), beam_dir)
  assert manifest["totals"]["documents"] == single["totals"]["documents"]
  words = single["totals"]["words"]
  what = "corpus (dedup %s)" % ("on" if dedup else "off")
  print("%s: %d files, %d documents kept, %d words" % (
      what, single["input_files"], single["totals"]["documents"], words))
  _line("single-machine", workers, single_s, words, "words")
  _line("beam", workers, beam_s, words, "words", single_s)
  return single_dir, single


def bench_tfrecords(shard_files, spm_model, scratch, workers):
  options = cpd.DataOptions(max_seq_length=128, dupe_factor=2)
  args = {"vocab_file": None, "spm_model_file": spm_model}
  single_out = cpd.sharded_output_files(
      shard_files, os.path.join(scratch, "tf-single-%d" % workers))
  beam_out = cpd.sharded_output_files(
      shard_files, os.path.join(scratch, "tf-beam-%d" % workers))
  results, single_s = _timed(lambda: cpd.run_sharded(
      shard_files, single_out, args, 12345, options, num_workers=workers,
      num_logged_examples=0), os.path.dirname(single_out[0]))
  (_, counters), beam_s = _timed(lambda: beam_cpd.run(
      shard_files, beam_out, args, 12345, options,
      pipeline_args=_beam_args(workers)), os.path.dirname(beam_out[0]))
  instances = sum(r.num_instances for r in results)
  assert counters["instances"] == instances
  for ours, theirs in zip(beam_out, single_out):
    with open(ours, "rb") as a, open(theirs, "rb") as b:
      assert a.read() == b.read(), ours
  print("tfrecords: %d shards, %d instances (max_seq_length 128, "
        "dupe_factor 2); outputs byte-identical" % (len(shard_files),
                                                     instances))
  _line("single-machine per-shard", workers, single_s, instances,
        "instances")
  _line("beam", workers, beam_s, instances, "instances", single_s)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--copies", type=int, default=4)
  parser.add_argument("--workers", default="1,2")
  parser.add_argument("--repeat", type=int, default=1,
                      help="Runs of each measurement; the fastest counts.")
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  REPEAT[0] = max(1, args.repeat)
  logging.set_verbosity(logging.WARNING)
  data_dir = paths.resolve_data_dir(args.data_dir)
  files = sorted(glob.glob(os.path.join(data_dir, "pubmed", "**",
                                        "*.xml.gz"), recursive=True))
  scratch = tempfile.mkdtemp(prefix="bench_beam_")
  try:
    input_dir = _replicate(files, args.copies, os.path.join(scratch, "in"))
    print("CPU cores: %d; input: %d PubMed files x%d copies" % (
        os.cpu_count(), len(files), args.copies))
    spm_model = None
    for workers in [int(w) for w in args.workers.split(",")]:
      single_dir, single = bench_corpus(input_dir, scratch, workers, False)
      bench_corpus(input_dir, scratch, workers, True)
      shard_files = [os.path.join(single_dir, s["file"])
                     for s in single["shards"]]
      if spm_model is None:
        spm_model = train_spm.train_sentencepiece(
            shard_files, os.path.join(scratch, "spm"), vocab_size=1000)
      bench_tfrecords(shard_files, spm_model, scratch, workers)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  main()
