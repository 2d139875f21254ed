r"""Benchmark: create_pretraining_data single-process vs per-shard mode.

Builds a sentence-per-line corpus from the CHEMDNER abstracts in the shared
data (split crudely into sentences, a blank line between abstracts, written
as --num_shards shard files), trains a SentencePiece model on it (unless
--spm_model_file is given), then runs `create_pretraining_data.py` on the
same shards twice: upstream's single-process mode and per-shard mode with
--num_workers workers. Reports examples/s and peak RSS (the whole process
tree, sampled from /proc, and its largest single process) and their ratios.

  python bench/bench_create_pretraining_data.py --num_docs=4000 --num_shards=8
"""
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from bio import paths  # pylint: disable=wrong-import-position

flags.DEFINE_string("data_dir", None, "Shared data dir (default: bio.paths).")
flags.DEFINE_integer("num_docs", 4000, "Abstracts to use (of 10,000).")
flags.DEFINE_integer("num_shards", 8, "Input shard files.")
flags.DEFINE_integer("num_workers", 0, "Per-shard workers (0: CPU count).")
flags.DEFINE_integer("max_seq_length", 512, "As the script's flag.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "As the script's flag.")
flags.DEFINE_integer("dupe_factor", 5, "As the script's flag.")
flags.DEFINE_integer("vocab_size", 8000, "Pieces of the SentencePiece model "
                     "trained for the benchmark.")
flags.DEFINE_string("spm_model_file", None, "Use this model, do not train.")
flags.DEFINE_string("work_dir", None, "Keep the files here (default: a "
                    "temporary directory, removed afterwards).")

FLAGS = flags.FLAGS
SCRIPT = os.path.join(ROOT, "create_pretraining_data.py")
SOURCES = ["training", "development", "evaluation"]


def write_shards(data_dir, out_dir, num_docs, num_shards):
  """CHEMDNER abstracts as sentence-per-line shards; returns their paths."""
  docs = []
  for name in SOURCES:
    path = os.path.join(data_dir, "ner-raw", "chemdner",
                        "%s.abstracts.txt" % name)
    with open(path, encoding="utf-8") as f:
      for line in f:
        _, title, abstract = line.rstrip("\n").split("\t")
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z(])", abstract)
        docs.append([title] + [s for s in sentences if s.strip()])
        if len(docs) == num_docs:
          break
    if len(docs) == num_docs:
      break
  shards = []
  for k in range(num_shards):
    path = os.path.join(out_dir, "part-%05d.txt" % k)
    with open(path, "w", encoding="utf-8") as f:
      for doc in docs[k::num_shards]:
        f.write("\n".join(doc) + "\n\n")
    shards.append(path)
  return shards, len(docs)


def _children():
  """{ppid: [pid, ...]} of every process, from /proc."""
  tree = {}
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open("/proc/%s/stat" % entry) as f:
        stat = f.read()
    except OSError:
      continue
    # The command name may hold spaces; fields resume after its ")".
    ppid = int(stat[stat.rindex(")") + 2:].split()[1])
    tree.setdefault(ppid, []).append(int(entry))
  return tree


def _rss_bytes(pid):
  try:
    with open("/proc/%d/status" % pid) as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def run_measured(args):
  """Runs python with `args`; returns (seconds, peak tree RSS, peak RSS of
  one process, CPU seconds of the tree), RSS sampled from /proc every 50 ms."""
  def cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
  with tempfile.TemporaryFile(mode="w+") as log:
    cpu_before = cpu_of_children()
    start = time.time()
    proc = subprocess.Popen([sys.executable] + args, stdout=log,
                            stderr=subprocess.STDOUT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    peak_tree = peak_one = 0
    while proc.poll() is None:
      tree = _children()
      pids, todo = [], [proc.pid]
      while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, []))
      sizes = [_rss_bytes(pid) for pid in pids]
      peak_tree = max(peak_tree, sum(sizes))
      peak_one = max(peak_one, max(sizes))
      time.sleep(0.05)
    seconds = time.time() - start
    # Waited-for workers count towards their parent's children usage.
    cpu = cpu_of_children() - cpu_before
    if proc.returncode != 0:
      log.seek(0)
      raise RuntimeError("run failed:\n%s" %
                         log.read()[-3000:])
  return seconds, peak_tree, peak_one, cpu


def baseline_rss(spm_model):
  """Peak RSS of a process that only imports the script and loads the model:
  the start-up cost every process (and every worker) pays."""
  code = ("import sys, time; sys.path.insert(0, %r); "
          "import create_pretraining_data; "
          "from albert import tokenization; "
          "tokenization.FullTokenizer(None, spm_model_file=%r); "
          "time.sleep(0.5)" % (ROOT, spm_model))
  return run_measured(["-c", code])[2]


def count_records(paths):
  import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
  return sum(sum(1 for _ in tf.io.tf_record_iterator(p)) for p in paths)


def main(argv):
  del argv
  data_dir = paths.resolve_data_dir(FLAGS.data_dir)
  if FLAGS.work_dir:
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    bench(data_dir, FLAGS.work_dir)
  else:
    work = tempfile.mkdtemp(prefix="bench_cpd_")
    try:
      bench(data_dir, work)
    finally:
      shutil.rmtree(work, ignore_errors=True)


def bench(data_dir, work):
  """Runs both modes on shards written under `work` and prints the table."""
  shard_dir = os.path.join(work, "text")
  os.makedirs(shard_dir, exist_ok=True)
  shards, num_docs = write_shards(data_dir, shard_dir, FLAGS.num_docs,
                                  FLAGS.num_shards)
  text_mb = sum(os.path.getsize(p) for p in shards) / 1e6
  print("corpus: %d abstracts, %.1f MB in %d shards" % (num_docs, text_mb,
                                                       len(shards)))

  spm_model = FLAGS.spm_model_file
  if not spm_model:
    from albert import train_spm  # pylint: disable=import-outside-toplevel
    spm_model = train_spm.train_sentencepiece(
        shards, os.path.join(work, "spm"), vocab_size=FLAGS.vocab_size,
        extra_args={"minloglevel": 1})

  num_workers = FLAGS.num_workers or os.cpu_count() or 1
  common = ["--input_file=" + os.path.join(shard_dir, "part-*.txt"),
            "--spm_model_file=" + spm_model,
            "--max_seq_length=%d" % FLAGS.max_seq_length,
            "--max_predictions_per_seq=%d" % FLAGS.max_predictions_per_seq,
            "--dupe_factor=%d" % FLAGS.dupe_factor]
  single_out = os.path.join(work, "single.tfrecord")
  sharded_dir = os.path.join(work, "sharded")
  for path in [single_out] + [os.path.join(sharded_dir, n) for n in (
      os.listdir(sharded_dir) if os.path.isdir(sharded_dir) else [])]:
    if os.path.exists(path):
      os.remove(path)  # per-shard mode would otherwise skip them

  runs = {}
  runs["single"] = run_measured([SCRIPT] + common +
                                ["--output_file=" + single_out])
  runs["parallel"] = run_measured([SCRIPT] + common + [
      "--output_dir=" + sharded_dir, "--num_workers=%d" % num_workers])
  counts = {
      "single": count_records([single_out]),
      "parallel": count_records(
          [os.path.join(sharded_dir, n) for n in sorted(os.listdir(
              sharded_dir))]),
  }

  print("settings: max_seq_length=%d dupe_factor=%d, %d CPUs, per-shard "
        "mode with %d workers" % (FLAGS.max_seq_length, FLAGS.dupe_factor,
                                  os.cpu_count(), num_workers))
  print("%-10s %9s %9s %11s %9s %13s %17s %17s" % (
      "mode", "examples", "seconds", "examples/s", "CPU s", "examples/CPUs",
      "peak RSS tree MB", "peak RSS 1 proc MB"))
  rates = {}
  per_cpu = {}
  for mode in ("single", "parallel"):
    seconds, tree, one, cpu = runs[mode]
    rates[mode] = counts[mode] / seconds
    per_cpu[mode] = counts[mode] / max(cpu, 1e-9)
    print("%-10s %9d %9.1f %11.1f %9.1f %13.1f %17.0f %17.0f" % (
        mode, counts[mode], seconds, rates[mode], cpu, per_cpu[mode],
        tree / 1e6, one / 1e6))
  print("ratio parallel/single: examples/s x%.2f, examples per CPU-second "
        "x%.2f, peak RSS tree x%.2f, peak RSS of one process x%.2f" % (
            rates["parallel"] / rates["single"],
            per_cpu["parallel"] / per_cpu["single"],
            runs["parallel"][1] / runs["single"][1],
            runs["parallel"][2] / runs["single"][2]))
  print("load average during the runs: %.2f (examples/s depends on free "
        "cores; examples per CPU-second does not)" % os.getloadavg()[0])
  base = baseline_rss(spm_model)
  print("start-up RSS of one process (TensorFlow + tokenizer): %.0f MB; above "
        "it, the largest process held %.0f MB (single) vs %.0f MB (one "
        "per-shard worker), ratio x%.2f" % (
            base / 1e6, (runs["single"][2] - base) / 1e6,
            (runs["parallel"][2] - base) / 1e6,
            (runs["parallel"][2] - base) / max(runs["single"][2] - base, 1)))
  print("(wall time includes each process's start-up: TensorFlow import, "
        "tokenizer load)")


if __name__ == "__main__":
  app.run(main)
