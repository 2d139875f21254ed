"""Tagging throughput and memory: bio.serving.tag with 1 and 2 processes,
bio.beam.tag on the local runner, and the readers on a baseline-sized file.

  flock /tmp/bioalbert-bench.lock .venv/bin/python bench/bench_tag.py \
      [--format=bioc] [--batch_size=16] [--big_docs=30000] \
      [--parts=speed,memory]

The model is the tests' tiny random-weight export (tests/bio/
tiny_ner.py: ALBERT tiny, 1000 SentencePiece pieces trained on the PubMed
sample): its entities are meaningless and a real BioALBERT model is far
slower per document, so the figures compare ways of running the same code,
not model speeds. Input: the shared PubMed sample (pubmed-sample-0001 and
-0002, 600 abstracts). Everything below is measured in this one run, one
configuration after the other, wall time including model loading:

  1 process     one process tags both files, one after the other
  2 processes   two processes at once, one file each
  beam x1/x2    bio.beam.tag, FnApiRunner, 1 worker / 2 worker processes

Memory: peak RSS (VmHWM) of a fresh process that streams a --big_docs
document file (the sample's articles repeated with new PMIDs, about a
baseline file) through bio.serving.tag's readers and writer with a stand-in
model (one entity per document), for 1/10 and all of the documents; then our
BioC XML reader and the bioc library's own streaming reader on the BioC file
written (the reason bio.serving.documents parses <document> elements itself).
"""
import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bio import paths  # pylint: disable=wrong-import-position

SAMPLES = ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz")


def build_model(work, pubmed_dir):
  """The tests' tiny export; returns its directory."""
  from albert import train_spm  # pylint: disable=g-import-not-at-top
  from bio.corpus import pubmed  # pylint: disable=g-import-not-at-top
  from tests.bio import tiny_ner  # pylint: disable=g-import-not-at-top
  texts = []
  for name in SAMPLES:
    for article in pubmed.read_file(os.path.join(pubmed_dir, name)):
      texts.extend(pubmed.article_blocks(article))
  spm = train_spm.train_sentencepiece_from_texts(
      texts, os.path.join(work, "bio1k"), vocab_size=1000)
  return tiny_ner.build_tiny_ner_export(work, spm)


def worker(args):
  """Subprocess: load the model, tag --files; print a JSON line."""
  from bio.serving import tag  # pylint: disable=g-import-not-at-top
  start = time.time()
  tagger = tag.load_model(args.saved_model)
  loaded = time.time()
  docs = 0
  for path in args.files.split(","):
    out = os.path.join(args.out_dir, os.path.basename(path) + "." +
                       args.format)
    docs += tag.tag_file(tagger, path, out, args.format,
                         batch_size=args.batch_size, log_every=0)[0]
  print(json.dumps({"docs": docs, "load": loaded - start,
                    "tag": time.time() - loaded}))


def _python(*args):
  return [sys.executable, os.path.abspath(__file__)] + list(args)


def run_processes(groups, model, out_dir, args):
  """Starts one worker per file group at once; (wall seconds, docs)."""
  os.makedirs(out_dir)
  start = time.time()
  procs = [subprocess.Popen(_python(
      "--worker", "--saved_model=" + model, "--files=" + ",".join(g),
      "--out_dir=" + out_dir, "--format=" + args.format,
      "--batch_size=%d" % args.batch_size), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
           for g in groups]
  results = []
  for proc in procs:
    out, _ = proc.communicate()
    if proc.returncode:
      raise SystemExit("worker failed (status %d)" % proc.returncode)
    results.append(json.loads(out.strip().splitlines()[-1]))
  return time.time() - start, sum(r["docs"] for r in results)


def run_beam(files, model, out_dir, args, workers):
  """bio.beam.tag over `files` in a fresh process; (wall seconds, docs)."""
  in_dir = out_dir + "-in"
  os.makedirs(in_dir)
  for path in files:
    os.symlink(path, os.path.join(in_dir, os.path.basename(path)))
  beam_args = ["--runner=FnApiRunner"]
  if workers > 1:
    beam_args += ["--direct_running_mode=multi_processing",
                  "--direct_num_workers=%d" % workers]
  start = time.time()
  subprocess.run([sys.executable, "-m", "bio.beam.tag",
                  "--saved_model=" + model, "--input=%s/*" % in_dir,
                  "--output_dir=" + out_dir, "--format=" + args.format,
                  "--batch_size=%d" % args.batch_size] + beam_args,
                 check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  seconds = time.time() - start
  with open(os.path.join(out_dir, "tag_report.json")) as f:
    return seconds, sum(r["documents"] for r in json.load(f))


def make_big_pubmed(pubmed_dir, path, count):
  """A PubMed XML file of `count` articles: the sample's, repeated with new
  PMIDs."""
  articles = []
  for name in SAMPLES:
    with gzip.open(os.path.join(pubmed_dir, name)) as f:
      articles.extend(ET.tostring(a, encoding="unicode")
                      for a in ET.parse(f).getroot())
  with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
    out.write("<PubmedArticleSet>\n")
    for i in range(count):
      elem = ET.fromstring(articles[i % len(articles)])
      elem.find("MedlineCitation/PMID").text = str(10000000 + i)
      out.write(ET.tostring(elem, encoding="unicode"))
    out.write("</PubmedArticleSet>\n")


def memory_child(args):
  """Subprocess: stream --files through a reader (and writer); print the
  peak RSS in MB."""
  from bio.serving import documents  # pylint: disable=g-import-not-at-top
  from bio.serving import tag  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  source = args.files
  if args.memory == "bioc_library":
    import bioc  # pylint: disable=g-import-not-at-top
    with open(source, "rb") as f:
      count = sum(1 for _ in bioc.biocxml.decoder.BioCXMLDocumentReader(f))
  elif args.memory == "read":
    count = sum(1 for d in documents.read_documents(source)
                if not isinstance(d, documents.BadDocument))
  else:
    def stand_in(texts):  # one entity per document: the first 4 letters
      n = len(texts)
      return {"num_entities": np.ones(n, int), "starts": np.zeros((n, 1)),
              "ends": np.full((n, 1), 4), "scores": np.full((n, 1), 0.5),
              "types": [[b"Gene"]] * n,
              "texts": [[t[:4].encode()] for t in texts]}
    count = tag.tag_file(stand_in, source, args.out_dir, args.format,
                         batch_size=args.batch_size, log_every=0)[0]
  print(json.dumps({"docs": count, "peak_mb": _peak_rss_mb()}))


def _peak_rss_mb():
  """This process's peak resident set (VmHWM: unlike ru_maxrss it does not
  carry the parent's peak across fork and exec)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024.0
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _memory(mode, source, out, args):
  proc = subprocess.run(_python(
      "--memory=" + mode, "--files=" + source, "--out_dir=" + out,
      "--format=" + args.format, "--batch_size=%d" % args.batch_size),
                        capture_output=True, text=True, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(pubmed_dir, work, args):
  print("\nPeak RSS streaming a baseline-sized file (stand-in model):")
  rows = {}
  for count in (args.big_docs // 10, args.big_docs):
    big = os.path.join(work, "big%d.xml.gz" % count)
    make_big_pubmed(pubmed_dir, big, count)
    out = os.path.join(work, "big%d.xml" % count)
    start = time.time()
    tagged = _memory("tag", big, out, args)
    seconds = time.time() - start
    read = _memory("read", out, out + ".ignored", args)
    library = _memory("bioc_library", out, out + ".ignored", args)
    rows[count] = (tagged, read, library)
    print("  %6d docs: PubMed -> %s %6.0f MB (%.0f docs/s without a model); "
          "reading that BioC: ours %6.0f MB, bioc library's reader %6.0f MB"
          % (tagged["docs"], args.format, tagged["peak_mb"],
             tagged["docs"] / seconds, read["peak_mb"], library["peak_mb"]))
  small, large = rows[args.big_docs // 10], rows[args.big_docs]
  print("  ratio (all / one tenth of the documents): tag x%.2f, our BioC "
        "reader x%.2f, bioc library's reader x%.2f" % (
            large[0]["peak_mb"] / small[0]["peak_mb"],
            large[1]["peak_mb"] / small[1]["peak_mb"],
            large[2]["peak_mb"] / small[2]["peak_mb"]))


def bench_speed(model, files, work, args):
  print("Tagging the PubMed sample (%d files), format %s, batch %d:" % (
      len(files), args.format, args.batch_size))
  rows = [
      ("bio.serving.tag, 1 process", lambda o: run_processes(
          [files], model, o, args)),
      ("bio.serving.tag, 2 processes", lambda o: run_processes(
          [[f] for f in files], model, o, args)),
      ("bio.beam.tag FnApiRunner x1", lambda o: run_beam(
          files, model, o, args, 1)),
      ("bio.beam.tag FnApiRunner x2", lambda o: run_beam(
          files, model, o, args, 2)),
  ]
  base = None
  for k, (name, fn) in enumerate(rows):
    seconds, docs = fn(os.path.join(work, "speed%d" % k))
    rate = docs / seconds
    base = base or rate
    print("  %-30s %5d docs in %6.1fs: %6.1f documents/s (x%.2f of 1 "
          "process)" % (name, docs, seconds, rate, rate / base))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--format", default="bioc",
                      choices=["jsonl", "pubtator", "bioc", "bioc_json"])
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--big_docs", type=int, default=30000)
  parser.add_argument("--parts", default="speed,memory",
                      help="What to measure: speed, memory or both.")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--memory", help=argparse.SUPPRESS)
  parser.add_argument("--saved_model", help=argparse.SUPPRESS)
  parser.add_argument("--files", help=argparse.SUPPRESS)
  parser.add_argument("--out_dir", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args)
  if args.memory:
    return memory_child(args)
  data = paths.default_data_dir()
  if not data or not os.path.isdir(data):
    raise SystemExit("shared data not found (set $%s)" % paths.ENV_VAR)
  pubmed_dir = os.path.join(data, "pubmed")
  work = tempfile.mkdtemp(prefix="bench-tag-")
  try:
    if "speed" in args.parts:
      model = build_model(work, pubmed_dir)
      files = [os.path.join(pubmed_dir, n) for n in SAMPLES]
      bench_speed(model, files, work, args)
    if "memory" in args.parts:
      bench_memory(pubmed_dir, work, args)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return None


if __name__ == "__main__":
  main()
