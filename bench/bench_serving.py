"""Throughput of the NER SavedModel's serving signature on this machine's CPU.

  flock /tmp/bioalbert-bench.lock .venv/bin/python bench/bench_serving.py \
      [--config=base|tiny] [--texts=sentences|abstracts] [--max_seq_length=128]

A model with random weights is exported once per variant (the weights do
not change the cost; the classifier is scaled so that labels are varied):
SentencePiece vocabulary of 2000 pieces trained on the PubMed sample, the
chosen ALBERT config, 3 labels. Variants, all measured in this run on the
same texts, each in a fresh process one after the other:

  fixed-fp32    every window padded to max_seq_length (the graph before
                issue 12; the baseline of every ratio)
  length-fp32   windows sorted by length, padded per sub-batch
  length-bf16   the same, encoder in bfloat16 by explicit casts (not in
                the default --variants: without AVX512-BF16/AMX, as on an
                AVX2-only CPU, TensorFlow emulates bfloat16 matmuls and this
                variant alone took over 13 minutes)
  length-onednn length-fp32 run under TF's auto_mixed_precision_onednn_
                bfloat16 grappler rewrite (a loader-side setting; a no-op
                on CPUs without bfloat16 support: then the scores equal fp32)
  hf-fp32       the peer: Hugging Face transformers
                pipeline("token-classification", aggregation_strategy=
                "first") with torch in float32, on an
                AlbertForTokenClassification converted from the same random
                run directory (bio.serving.export_hf), so both sides run the
                same weights; windows of max_seq_length with a stride of half
                of it for longer texts
  hf-bf16       the same under torch.autocast("cpu", dtype=torch.bfloat16)

The pipeline's entities can differ from ours even with equal
probabilities: it finds word starts by the spaces of the text (its fallback
for tokenizers without a subword prefix), so a word cut into a lone "▁"
piece and more pieces counts as two words, and whole texts beyond
max_seq_length pieces are windowed its own way.

The hf-* variants need torch and transformers (the `hf` extra); without
them the bench says so and skips those variants.

Texts: --texts=sentences, NCBI-disease test sentences joined by spaces
(the first --sentences, 256 as in issue 12, at every batch size;
--batch1_sentences may take fewer at batch 1); --texts=abstracts, title + abstract of the PubMed sample articles
(--abstracts of them, at every batch size), which need several windows.

Prints per variant and batch size texts/s and words/s, the ratios to
fixed-fp32 and to hf-bf16, the best batch size of each variant against
issue 12's goals (>= 1.75x hf-bf16, >= 14 sentences/s in fp32), and how
many texts got exactly fixed-fp32's entities (start, end, type) with the
largest score difference among identical entities. Figures are only
comparable within one run: other jobs on the machine slow every variant.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bio import paths  # pylint: disable=wrong-import-position

VARIANTS = {  # name: (precision, length_aware, onednn rewrite)
    "fixed-fp32": ("fp32", False, False),
    "length-fp32": ("fp32", True, False),
    "length-bf16": ("bf16", True, False),
    "length-onednn": ("fp32", True, True),
}
HF_VARIANTS = {"hf-fp32": False, "hf-bf16": True}  # name: bf16 autocast
DEFAULT_VARIANTS = "fixed-fp32,length-fp32,length-onednn,hf-fp32,hf-bf16"
BATCHES = (1, 8, 64)
GOAL_HF_RATIO = 1.75  # issue 12: best batch size against hf-bf16's best
GOAL_FP32 = 14.0  # issue 12: sentences/s in fp32


def build_run_dir(work_dir, config_name, data_dir):
  """A run_ner.py-style directory with random weights; returns its path."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from albert import modeling, train_spm  # pylint: disable=g-import-not-at-top
  from bio.corpus import pubmed  # pylint: disable=g-import-not-at-top
  from bio.ner import model as ner_model  # pylint: disable=g-import-not-at-top
  from bio.ner import run_dir as run_files  # pylint: disable=g-import-not-at-top
  texts = []
  for name in ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz"):
    for article in pubmed.read_file(os.path.join(data_dir, "pubmed", name)):
      texts.extend(pubmed.article_blocks(article))
  spm_file = train_spm.train_sentencepiece_from_texts(
      texts, os.path.join(work_dir, "spm"), vocab_size=2000)
  config = modeling.AlbertConfig.from_json_file(os.path.join(
      ROOT, "albert", "configs", "albert_%s.json" % config_name))
  config.vocab_size = 2000
  config_file = os.path.join(work_dir, "albert_config.json")
  with open(config_file, "w") as f:
    f.write(config.to_json_string())
  labels = ["O", "B-Disease", "I-Disease"]
  run_dir = os.path.join(work_dir, "run")
  os.makedirs(os.path.join(run_dir, "best"))
  with tf.Graph().as_default():
    model = modeling.AlbertModel(config, False,
                                 tf.placeholder(tf.int32, [None, None]))
    ner_model.token_classifier(model.get_sequence_output(), len(labels),
                               False)
    with tf.variable_scope("ner", reuse=True):
      weights = tf.get_variable("output_weights")
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      # Logits of standard deviation ~2: varied labels, some near ties.
      std = 2.0 / config.hidden_size ** 0.5
      sess.run(weights.assign(np.random.RandomState(0).normal(
          0, std, weights.shape.as_list())))
      tf.train.Saver().save(sess, os.path.join(run_dir, "best",
                                               "model.ckpt-1"))
  with open(os.path.join(run_dir, run_files.LABEL_MAP_FILE), "w") as f:
    json.dump({l: i for i, l in enumerate(labels)}, f)
  with open(os.path.join(run_dir, run_files.BEST_CHECKPOINT_FILE), "w") as f:
    f.write("best/model.ckpt-1\n")
  with open(os.path.join(run_dir, run_files.RUN_CONFIG_FILE), "w") as f:
    json.dump({"albert_config_file": config_file, "spm_model_file": spm_file,
               "do_lower_case": True}, f)
  return run_dir


def load_texts(args, data_dir):
  """(texts, kind): the benchmark inputs."""
  if args.texts == "abstracts":
    from bio.corpus import pubmed  # pylint: disable=g-import-not-at-top
    path = os.path.join(data_dir, "pubmed", "pubmed-sample-0001.xml.gz")
    texts = [" ".join(pubmed.article_blocks(a))
             for a in pubmed.read_file(path)]
    return texts[:args.abstracts], "abstracts"
  from bio.ner import iob  # pylint: disable=g-import-not-at-top
  sentences = iob.read_iob_file(
      os.path.join(data_dir, "ner", "NCBI-disease", "test.tsv"))
  return [" ".join(s.tokens) for s in sentences[:args.sentences]], "sentences"


def measure(export_dir, texts_file, batch1_count, rewrite, threads):
  """In this (fresh) process: {batch: [seconds, texts]} and the entities."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
  if rewrite:
    tf.config.optimizer.set_experimental_options(
        {"auto_mixed_precision_onednn_bfloat16": True})
  with open(texts_file) as f:
    texts = json.load(f)
  serve = tf.saved_model.load(export_dir).signatures["serving_default"]
  serve(text=tf.constant(texts[:8]))  # warm-up: graph and kernel set-up
  timings = {}
  for batch in BATCHES:
    count = batch1_count if batch == 1 else len(texts)
    outputs = []
    started = time.perf_counter()
    for i in range(0, count, batch):
      outputs.append(serve(text=tf.constant(texts[i:min(i + batch, count)])))
    timings[batch] = [time.perf_counter() - started, count]
  return {"timings": timings, "entities": entities_of(outputs)}


def measure_hf(hf_dir, texts_file, batch1_count, bf16, threads,
               max_seq_length):
  """measure() for the Hugging Face pipeline (in a fresh process)."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  # Unigram pieces have no continuing-subword prefix: the pipeline warns that
  # it finds words by spaces, which is how these texts are written.
  warnings.filterwarnings("ignore", message=".*fallback heuristic.*")
  transformers.logging.set_verbosity_error()
  if threads:
    torch.set_num_threads(threads)
  with open(texts_file) as f:
    texts = json.load(f)
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  tokenizer.model_max_length = max_seq_length
  model = transformers.AlbertForTokenClassification.from_pretrained(hf_dir)
  pipe = transformers.pipeline(
      "token-classification", model=model.eval(), tokenizer=tokenizer,
      aggregation_strategy="first", stride=max_seq_length // 2, device=-1)
  precision = (torch.autocast("cpu", dtype=torch.bfloat16) if bf16
               else contextlib.nullcontext())
  timings = {}
  with precision:
    pipe(texts[:8], batch_size=8)  # warm-up
    for batch in BATCHES:
      count = batch1_count if batch == 1 else len(texts)
      started = time.perf_counter()
      outputs = pipe(texts[:count], batch_size=batch)
      timings[batch] = [time.perf_counter() - started, count]
  entities = []
  for text, found in zip(texts, outputs):
    entities.append([])
    for e in found:
      # The fast tokenizer's offsets of a word's first piece ("▁word")
      # cover the space before it: spans start at the first visible one.
      start, end = int(e["start"]), int(e["end"])
      start += len(text[start:end]) - len(text[start:end].lstrip())
      entities[-1].append([start, end, e["entity_group"], float(e["score"])])
  return {"timings": timings, "entities": entities,
          "versions": "torch %s, transformers %s, %d threads" % (
              torch.__version__, transformers.__version__,
              torch.get_num_threads())}


def entities_of(outputs):
  """[[start, end, type, score], ...] per text of the serving outputs."""
  entities = []
  for out in outputs:
    out = {k: v.numpy() for k, v in out.items()}
    for row, n in enumerate(out["num_entities"]):
      entities.append([[int(out["starts"][row][j]), int(out["ends"][row][j]),
                        out["types"][row][j].decode(),
                        float(out["scores"][row][j])] for j in range(n)])
  return entities


def compare(reference, entities):
  """(texts with identical entities, largest score difference)."""
  same, worst = 0, 0.0
  for want, got in zip(reference, entities):
    if [e[:3] for e in want] == [e[:3] for e in got]:
      same += 1
      for w, g in zip(want, got):
        worst = max(worst, abs(w[3] - g[3]))
  return same, worst


def _in_fresh_process(call, out_file, env=None):
  """Runs `call` (Python source calling a function of this file) in a new
  interpreter, which writes its JSON result to out_file; returns it."""
  code = ("import json, sys; sys.path.insert(0, %r); "
          "import bench_serving as b; json.dump(%s, open(%r, 'w'))" % (
              os.path.dirname(os.path.abspath(__file__)), call, out_file))
  subprocess.run([sys.executable, "-c", code], check=True, env=env)
  with open(out_file) as f:
    return json.load(f)


def run_variant(name, run_dir, work_dir, args, texts_file):
  """Exports one variant and measures it in a fresh process."""
  if name in HF_VARIANTS:
    return run_hf_variant(name, run_dir, work_dir, args, texts_file)
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  precision, length_aware, rewrite = VARIANTS[name]
  export_dir = os.path.join(work_dir, "export-" + name)
  opts = export.ServingOptions(precision=precision, length_aware=length_aware,
                               max_batch_tokens=args.max_batch_tokens,
                               length_multiple=args.length_multiple)
  export.export_ner(run_dir, export_dir, max_seq_length=args.max_seq_length,
                    opts=opts)
  return _in_fresh_process("b.measure(%r, %r, %d, %r, %d)" % (
      export_dir, texts_file, args.batch1_texts, rewrite,
      args.intra_op_threads), os.path.join(work_dir, name + ".json"))


def run_hf_variant(name, run_dir, work_dir, args, texts_file):
  """Converts the run directory for transformers (once) and measures the
  pipeline in a fresh process that does not load TensorFlow."""
  from albert import export_hf  # pylint: disable=g-import-not-at-top
  from bio.serving import export_hf as ner_hf  # pylint: disable=g-import-not-at-top
  hf_dir = os.path.join(work_dir, "hf")
  if not os.path.isdir(hf_dir):
    export_hf.export(ner_hf.run_dir_options(run_dir, hf_dir))
  env = dict(os.environ, USE_TF="0", USE_TORCH="1")
  return _in_fresh_process("b.measure_hf(%r, %r, %d, %r, %d, %d)" % (
      hf_dir, texts_file, args.batch1_texts, HF_VARIANTS[name],
      args.intra_op_threads, args.max_seq_length),
                           os.path.join(work_dir, name + ".json"), env)


def hf_missing():
  """The hf extra's modules that are not installed."""
  return [m for m in ("torch", "transformers")
          if importlib.util.find_spec(m) is None]


def cpu_bf16():
  """The CPU's bfloat16 flags (avx512_bf16, amx_bf16), if any."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = set(f.read().split())
  except OSError:
    return ""
  return ",".join(sorted(flags & {"avx512_bf16", "amx_bf16"}))


def report(results, texts, kind):
  words = [len(t.split()) for t in texts]
  base = results["fixed-fp32"]
  peer = results.get("hf-bf16")
  for name, result in results.items():
    if "versions" in result:
      print("%s: %s" % (name, result["versions"]))
  best = {}
  for batch in BATCHES:
    seconds, count = base["timings"][str(batch)]
    print("batch %d (%d %s, %d words):" % (batch, count, kind,
                                          sum(words[:count])))
    for name, result in results.items():
      seconds, count = result["timings"][str(batch)]
      rate = count / seconds
      best[name] = max(best.get(name, (0, 0)), (rate, batch))
      against_peer = ""
      if peer:
        peer_seconds, peer_count = peer["timings"][str(batch)]
        against_peer = "  x%.2f hf-bf16" % (rate * peer_seconds / peer_count)
      print("  %-14s %7.2f %s/s %8.1f words/s  x%.2f fixed-fp32%s" % (
          name, rate, kind, sum(words[:count]) / seconds,
          base["timings"][str(batch)][0] / seconds * count /
          base["timings"][str(batch)][1], against_peer))
  print("best batch size (issue 12 goals: >= %.2fx hf-bf16's best, >= %.0f "
        "sentences/s in fp32):" % (GOAL_HF_RATIO, GOAL_FP32))
  for name, (rate, batch) in best.items():
    line = "  %-14s %7.2f %s/s at batch %d" % (name, rate, kind, batch)
    if peer and not name.startswith("hf-"):
      line += "  x%.2f hf-bf16's best" % (rate / best["hf-bf16"][0])
    print(line)
  print("entities vs fixed-fp32 (batch 64, %d %s):" % (len(texts), kind))
  for name, result in results.items():
    same, worst = compare(base["entities"], result["entities"])
    total = sum(len(e) for e in result["entities"])
    print("  %-14s %d/%d texts identical (%.2f%%), %d entities, largest "
          "score difference %.2e" % (name, same, len(texts),
                                     100.0 * same / len(texts), total, worst))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="base", choices=["base", "tiny"])
  parser.add_argument("--texts", default="sentences",
                      choices=["sentences", "abstracts"])
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--sentences", type=int, default=256)
  parser.add_argument("--abstracts", type=int, default=8)
  parser.add_argument("--batch1_sentences", type=int, default=256)
  parser.add_argument("--max_batch_tokens", type=int, default=None,
                      help="default: bio.serving.export's")
  parser.add_argument("--length_multiple", type=int, default=None,
                      help="default: bio.serving.export's")
  parser.add_argument("--intra_op_threads", type=int, default=0,
                      help="TensorFlow's intra-op and torch's threads "
                      "(0: their defaults)")
  parser.add_argument("--variants", default=DEFAULT_VARIANTS)
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  data_dir = paths.resolve_data_dir(args.data_dir)
  texts, kind = load_texts(args, data_dir)
  args.batch1_texts = (min(args.batch1_sentences, len(texts))
                       if kind == "sentences" else len(texts))
  names = args.variants.split(",")
  unknown = [n for n in names if n not in VARIANTS and n not in HF_VARIANTS]
  if unknown:
    parser.error("unknown --variants %s (known: %s)" % (
        ",".join(unknown), ",".join(list(VARIANTS) + list(HF_VARIANTS))))
  if names[0] != "fixed-fp32":
    names.insert(0, "fixed-fp32")
  missing = hf_missing()
  if missing and any(n in HF_VARIANTS for n in names):
    print("SKIPPED %s: %s not installed (pip install -e '.[hf]')" % (
        ",".join(n for n in names if n in HF_VARIANTS), " and ".join(missing)))
    names = [n for n in names if n not in HF_VARIANTS]
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  defaults = export.ServingOptions()
  if args.max_batch_tokens is None:
    args.max_batch_tokens = defaults.max_batch_tokens
  if args.length_multiple is None:
    args.length_multiple = defaults.length_multiple
  print("random albert_%s, vocabulary 2000, max_seq_length %d, "
        "max_batch_tokens %d, length_multiple %d, %d %s; CPU bfloat16 "
        "support: %s; load average %s" % (
            args.config, args.max_seq_length, args.max_batch_tokens,
            args.length_multiple, len(texts), kind, cpu_bf16() or "none",
            " ".join("%.2f" % x for x in os.getloadavg())))
  with tempfile.TemporaryDirectory() as work_dir:
    run_dir = build_run_dir(work_dir, args.config, data_dir)
    texts_file = os.path.join(work_dir, "texts.json")
    with open(texts_file, "w") as f:
      json.dump(texts, f)
    results = {name: run_variant(name, run_dir, work_dir, args, texts_file)
               for name in names}
  report(results, texts, kind)
  print("load average at the end: %s" % " ".join(
      "%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
  main()
