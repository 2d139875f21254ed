"""Throughput of bio.corpus.prepare on the shared PubMed and PMC samples.

  python bench/bench_prepare_corpus.py [--copies=8] [--workers=1,2]

The samples are small, so each input file is linked `--copies` times under
new names (PubMed dedup is off for these runs: the copies repeat PMIDs; the
dedup index pass is timed on its own). Prints input MB/s (as stored and as
XML/text after decompression) and output words/s, in total and per worker,
plus the speed of the sentence splitter alone. A benchmark, not a test.
"""
import argparse
import glob
import gzip
import os
import resource
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from bio import paths  # pylint: disable=wrong-import-position
from bio.corpus import pmc  # pylint: disable=wrong-import-position
from bio.corpus import prepare  # pylint: disable=wrong-import-position
from bio.corpus import pubmed  # pylint: disable=wrong-import-position
from bio.text import sentences  # pylint: disable=wrong-import-position


def _cpu_seconds():
  """CPU time of this process and of its finished worker processes."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return (own.ru_utime + own.ru_stime + children.ru_utime +
          children.ru_stime)


def _unpacked_size(path):
  if path.endswith(".gz"):
    with gzip.open(path, "rb") as f:
      return len(f.read())
  return os.path.getsize(path)


def _replicate(files, copies, directory):
  os.makedirs(directory)
  out = []
  for k in range(copies):
    for path in files:
      name = "c%03d_%s" % (k, os.path.basename(path))
      target = os.path.join(directory, name)
      os.symlink(path, target)
      out.append(target)
  return out


def _settings(source, input_dir, output_dir, workers):
  return {
      "source": source, "input": input_dir, "output_dir": output_dir,
      "num_workers": workers, "shard_docs": 0, "shard_bytes": 64 << 20,
      "min_line_chars": 20, "abstract_labels": False, "dedup": False,
      "plan": None, "plan_only": False, "pmc_captions": False,
      "pmc_section_titles": False, "pmc_txt_front": False,
      "unit_bytes": 1 << 20, "num_hosts": 1, "host_index": 0,
      "progress_secs": 3600,
  }


def bench_run(source, files, workers, scratch):
  stored = sum(os.path.getsize(p) for p in files)
  unpacked = sum(_unpacked_size(p) for p in files)
  output = os.path.join(scratch, "out-%s-%d" % (source, workers))
  cpu_before = _cpu_seconds()
  start = time.time()
  manifest = prepare.run(
      _settings(source, os.path.dirname(files[0]), output, workers),
      report=lambda msg: None)
  seconds = time.time() - start
  cpu = _cpu_seconds() - cpu_before
  totals = manifest["totals"]
  print("%-6s workers=%d: %d files, %.1f MB stored / %.1f MB unpacked, "
        "%d docs, %d words in %.2fs" % (
            source, workers, len(files), stored / 1e6, unpacked / 1e6,
            totals["documents"], totals["words"], seconds))
  print("        total     : %6.2f MB/s stored, %6.2f MB/s unpacked, "
        "%8.0f words/s" % (stored / 1e6 / seconds, unpacked / 1e6 / seconds,
                           totals["words"] / seconds))
  print("        per worker: %6.2f MB/s stored, %6.2f MB/s unpacked, "
        "%8.0f words/s" % (stored / 1e6 / seconds / workers,
                           unpacked / 1e6 / seconds / workers,
                           totals["words"] / seconds / workers))
  # Wall-clock rates depend on what else the machine runs; rates per CPU
  # second are what one uncontended worker would do.
  print("        per CPU-s : %6.2f MB/s stored, %6.2f MB/s unpacked, "
        "%8.0f words/s  (%.1f CPU-s)" % (
            stored / 1e6 / cpu, unpacked / 1e6 / cpu, totals["words"] / cpu,
            cpu))


def bench_index(files):
  unpacked = sum(_unpacked_size(p) for p in files)
  start = time.process_time()
  indexes = [pubmed.index_file(p) for p in files]
  pubmed.build_plan(indexes)
  seconds = time.process_time() - start
  print("pubmed dedup index pass (per CPU-s): %d files, %.2f MB/s unpacked, "
        "%.0f records/s" % (len(files), unpacked / 1e6 / seconds,
                            sum(len(i.pmids) for i in indexes) / seconds))


def bench_splitter(pubmed_files, pmc_files):
  paragraphs = []
  for path in pubmed_files:
    for article in pubmed.read_file(path):
      paragraphs.extend(pubmed.article_blocks(article))
  for path in pmc_files:
    for article in pmc.read_file(path):
      paragraphs.extend(pmc.article_blocks(article))
  chars = sum(len(p) for p in paragraphs)
  start = time.process_time()
  count = sum(len(sentences.split_sentences(p)) for p in paragraphs)
  seconds = time.process_time() - start
  print("sentence splitter (bio.text.sentences, Bling Fire + guards): %.2f MB of "
        "text, %d sentences, %.2f MB per CPU-s" % (chars / 1e6, count,
                                           chars / 1e6 / seconds))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--copies", type=int, default=8)
  parser.add_argument("--workers", default="1,2")
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  data_dir = paths.resolve_data_dir(args.data_dir)
  pubmed_files = sorted(glob.glob(os.path.join(data_dir, "pubmed", "**",
                                               "*.xml.gz"), recursive=True))
  pmc_files = sorted(glob.glob(os.path.join(data_dir, "pmc", "*.nxml")))
  scratch = tempfile.mkdtemp(prefix="bench_corpus_")
  try:
    print("CPU cores: %d; shared sample: %d PubMed files, %d PMC articles, "
          "x%d copies" % (os.cpu_count(), len(pubmed_files), len(pmc_files),
                          args.copies))
    bench_splitter(pubmed_files, pmc_files)
    big_pubmed = _replicate(pubmed_files, args.copies,
                            os.path.join(scratch, "pubmed"))
    bench_index(big_pubmed)
    big_pmc = _replicate(pmc_files, args.copies * 4,
                         os.path.join(scratch, "pmc"))
    for workers in [int(w) for w in args.workers.split(",")]:
      bench_run("pubmed", big_pubmed, workers, scratch)
      bench_run("pmc", big_pmc, workers, scratch)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  main()
