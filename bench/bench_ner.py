r"""Benchmark: NER fine-tuning examples/s, fixed padding vs length buckets.

Real NCBI-disease training sentences (shared data), tokenized with a
SentencePiece model trained on the PubMed samples, cut into windows of
--max_seq_length (512, the paper's) by bio.ner.features. Three variants of
the NER model_fn's TRAIN graph (AdamW, dropout) run in alternating rounds:
- fixed:       batches of windows padded to max_seq_length (old path; TPU);
- bucketed:    batches from features.bucket_batches (same examples, each
               batch padded to its longest window);
- bucketed+bf16: the same batches with the oneDNN bfloat16 rewrite.
Every variant sees the same examples (the bucketed batches are the ones the
training input_fn yields; fixed batches hold the same windows). Prints
examples/s and the ratios, measured in one run.

  flock /tmp/bioalbert-bench.lock .venv/bin/python bench/bench_ner.py
"""
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf

from albert import modeling
from albert import precision
from albert import tokenization
from albert import train_spm
from bio import paths
from bio.corpus import pubmed
from bio.ner import datasets
from bio.ner import features as ner_features
from bio.ner import iob
from bio.ner import model as ner_model
# pylint: enable=wrong-import-position

flags.DEFINE_string("config", os.path.join(ROOT, "albert", "configs",
                                           "albert_tiny.json"),
                    "ALBERT config json.")
flags.DEFINE_integer("max_seq_length", 512, "Window length.")
flags.DEFINE_integer("batch_size", 8, "Training batch size.")
flags.DEFINE_integer("batches", 6, "Timed batches per variant and round.")
flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
FLAGS = flags.FLAGS


def train_features(work_dir):
  """(features of NCBI-disease train, number of labels)."""
  texts = []
  for name in ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz"):
    path = os.path.join(paths.resolve_data_dir(), "pubmed", name)
    for article in pubmed.read_file(path):
      texts.extend(pubmed.article_blocks(article))
  spm = train_spm.train_sentencepiece_from_texts(
      texts, os.path.join(work_dir, "bio1k"), vocab_size=1000)
  tokenizer = tokenization.FullTokenizer(None, spm_model_file=spm)
  encoder = ner_features.PieceEncoder(tokenizer)
  data_dir = datasets.resolve_dataset_dir("NCBI-disease")
  sentences = datasets.load(data_dir, False, dataset="NCBI-disease")["train"]
  labels = iob.get_label_list(sentences)
  label_map = {label: i for i, label in enumerate(labels)}
  feats = ner_features.convert_sentences(sentences, label_map,
                                         FLAGS.max_seq_length, encoder,
                                         log_every=0)
  return feats, len(labels)


def bucketed_batches(feats, count):
  """The first `count` batches of the bucketed training pipeline."""
  arrays = ner_features.features_to_arrays(feats)
  with tf.Graph().as_default(), tf.Session() as sess:
    d = tf.data.Dataset.from_tensor_slices(arrays).shuffle(
        len(feats), seed=0)
    d = ner_features.bucket_batches(
        d, FLAGS.batch_size,
        ner_features.default_bucket_boundaries(FLAGS.max_seq_length), True)
    nxt = tf.data.make_one_shot_iterator(d).get_next()
    return [sess.run(nxt) for _ in range(count)]


def fixed_batch(batch, max_seq_length):
  """The same windows padded to max_seq_length."""
  pad = max_seq_length - batch["input_ids"].shape[1]
  return {k: (np.pad(v, [(0, 0), (0, pad)]) if v.ndim == 2 else v)
          for k, v in batch.items()}


def make_graph(config, num_labels):
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(0)
    feeds = {k: tf.placeholder(tf.int32, [None, None] if k in
                               ner_features.SEQUENCE_KEYS else [None])
             for k in ner_features.FEATURE_KEYS}
    model_fn = ner_model.model_fn_builder(config, num_labels, None, 1e-5,
                                          1000, 10, use_tpu=False)
    spec = model_fn(feeds, None, tf.estimator.ModeKeys.TRAIN, {})
    init = tf.global_variables_initializer()
  return graph, feeds, init, spec.train_op


def main(_):
  logging.set_verbosity(logging.WARNING)
  config = modeling.AlbertConfig.from_json_file(FLAGS.config)
  with tempfile.TemporaryDirectory() as work_dir:
    feats, num_labels = train_features(work_dir)
  lengths = [sum(f.input_mask) for f in feats]
  total = FLAGS.batches * FLAGS.rounds
  buckets = bucketed_batches(feats, total + 1)
  variants = {
      "fixed": ("fp32", [fixed_batch(b, FLAGS.max_seq_length)
                         for b in buckets]),
      "bucketed": ("fp32", buckets),
      "bucketed+bf16": ("bf16", buckets),
  }
  graph, feeds, init, train_op = make_graph(config, num_labels)
  sessions = {}
  for name, (prec, batches) in variants.items():
    plan = precision.plan(precision.TrainingOptions(precision=prec))
    sess = tf.Session(graph=graph, config=precision.session_config(plan))
    sess.run(init)
    sess.run(train_op, {feeds[k]: v for k, v in batches[-1].items()})
    sessions[name] = sess
  seconds = dict.fromkeys(variants, 0.0)
  for r in range(FLAGS.rounds):
    for name, (_, batches) in variants.items():
      started = time.time()
      for b in batches[r * FLAGS.batches:(r + 1) * FLAGS.batches]:
        sessions[name].run(train_op, {feeds[k]: v for k, v in b.items()})
      seconds[name] += time.time() - started
  print("NCBI-disease train: %d windows, mean %.1f / max %d pieces; config "
        "%s, max_seq_length %d, batch %d, %d rounds x %d batches" % (
            len(feats), np.mean(lengths), max(lengths),
            os.path.basename(FLAGS.config), FLAGS.max_seq_length,
            FLAGS.batch_size, FLAGS.rounds, FLAGS.batches))
  print("| variant | train examples/s | vs fixed | vs previous row |")
  print("|---|---|---|---|")
  previous = None
  for name in variants:
    rate = total * FLAGS.batch_size / seconds[name]
    base = total * FLAGS.batch_size / seconds["fixed"]
    print("| %s | %.2f | %.2fx | %s |" % (
        name, rate, rate / base,
        "%.2fx" % (rate / previous) if previous else "-"))
    previous = rate


if __name__ == "__main__":
  app.run(main)
