"""Throughput of the NER SavedModel's serving signature on this machine's CPU.

  python bench/bench_serving.py [--saved_model=DIR] [--config=base|tiny]

Without --saved_model, a model with random weights is exported first (the
weights do not change the cost): SentencePiece vocabulary trained on the
PubMed sample, the chosen ALBERT config, 3 labels. Inputs are NCBI-disease
test sentences. Prints sentences/s and words/s at batch 1, 8 and 64, and
the batch-64 / batch-1 speed-up measured in the same run.
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bio import paths  # pylint: disable=wrong-import-position
from bio.ner import iob  # pylint: disable=wrong-import-position


def build_random_export(work_dir, config_name, max_seq_length, data_dir):
  """Exports a random-weight NER model; returns the SavedModel path."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from albert import modeling, train_spm  # pylint: disable=g-import-not-at-top
  from bio.ner import model as ner_model  # pylint: disable=g-import-not-at-top
  from bio.ner import run_dir as ner_run_files  # pylint: disable=g-import-not-at-top
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  from bio.corpus import pubmed  # pylint: disable=g-import-not-at-top
  texts = []
  for name in ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz"):
    for article in pubmed.read_file(os.path.join(data_dir, "pubmed", name)):
      texts.extend(pubmed.article_blocks(article))
  spm_file = train_spm.train_sentencepiece_from_texts(
      texts, os.path.join(work_dir, "spm"), vocab_size=2000)
  config_file = os.path.join(ROOT, "albert", "configs",
                             "albert_%s.json" % config_name)
  config = modeling.AlbertConfig.from_json_file(config_file)
  config.vocab_size = 2000
  config_file = os.path.join(work_dir, "albert_config.json")
  with open(config_file, "w") as f:
    f.write(config.to_json_string())
  labels = ["O", "B-Disease", "I-Disease"]
  run_dir = os.path.join(work_dir, "run")
  os.makedirs(os.path.join(run_dir, "best"))
  with tf.Graph().as_default():
    ids = tf.placeholder(tf.int32, [None, None])
    model = modeling.AlbertModel(config, False, ids)
    ner_model.token_classifier(model.get_sequence_output(), len(labels),
                               False)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      tf.train.Saver().save(sess, os.path.join(run_dir, "best",
                                               "model.ckpt-1"))
  with open(os.path.join(run_dir, ner_run_files.LABEL_MAP_FILE), "w") as f:
    json.dump({l: i for i, l in enumerate(labels)}, f)
  with open(os.path.join(run_dir, ner_run_files.BEST_CHECKPOINT_FILE), "w") as f:
    f.write("best/model.ckpt-1\n")
  export_dir = os.path.join(work_dir, "export")
  export.export_ner(run_dir, export_dir, albert_config_file=config_file,
                        spm_model_file=spm_file, max_seq_length=max_seq_length)
  return export_dir


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--saved_model", default=None)
  parser.add_argument("--config", default="base", choices=["base", "tiny"])
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--sentences", type=int, default=256)
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  data_dir = paths.resolve_data_dir(args.data_dir)
  sentences = iob.read_iob_file(
      os.path.join(data_dir, "ner", "NCBI-disease", "test.tsv"))
  texts = [" ".join(s.tokens) for s in sentences[:args.sentences]]
  words = sum(len(s.tokens) for s in sentences[:args.sentences])

  with tempfile.TemporaryDirectory() as work_dir:
    export_dir = args.saved_model or build_random_export(
        work_dir, args.config, args.max_seq_length, data_dir)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    serve(text=tf.constant(texts[:2]))  # warm-up: graph and kernel set-up
    rates = {}
    print("model: %s, %d sentences (%d words), max_seq_length %d" % (
        args.saved_model or "random albert_%s" % args.config, len(texts),
        words, args.max_seq_length))
    for batch in (1, 8, 64):
      started = time.perf_counter()
      for i in range(0, len(texts), batch):
        serve(text=tf.constant(texts[i:i + batch]))
      elapsed = time.perf_counter() - started
      rates[batch] = len(texts) / elapsed
      print("batch %3d: %8.1f sentences/s %9.1f words/s" % (
          batch, rates[batch], words / elapsed))
    print("speed-up batch 64 / batch 1: %.2fx" % (rates[64] / rates[1]))


if __name__ == "__main__":
  main()
