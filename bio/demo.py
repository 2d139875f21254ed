r"""`make demo`: the whole BioALBERT pipeline on a small scale, end to end.

  python -m bio.demo --output_dir=demo_output [--data_dir=DIR]

1. PubMed XML (the shared sample) → cleaned, sentence-split text shards.
2. A SentencePiece vocabulary trained on that text.
3. Pretraining TFRecords (create_pretraining_data.py).
4. A tiny ALBERT pretrained from scratch (run_pretraining.py, LAMB).
5. NER fine-tuning on NCBI-disease from that checkpoint (run_ner.py), with
   dev-set model selection and test-set P/R/F1.
6. SavedModel export, then tagging two example abstracts with it.

Every stage runs the real command-line tool in a subprocess (what a user
would type is printed), logs to output_dir/logs/, and is skipped on a re-run
when its output is complete. The model is tiny and barely pretrained, so the
F1 it reaches says that the pipeline works, not what BioALBERT reaches.
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from bio import paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("output_dir", "demo_output", "Where every artifact goes.")
flags.DEFINE_string("data_dir", None, "Shared data (default: "
                    "$BIOALBERT_DATA_DIR, then ../shared/data).")
flags.DEFINE_integer("vocab_size", 2000, "SentencePiece vocabulary size.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length, both stages.")
flags.DEFINE_integer("pretrain_steps", 500, "Pretraining steps.")
flags.DEFINE_integer("ner_steps", 900, "Fine-tuning steps.")
flags.DEFINE_float("ner_learning_rate", 3e-4,
                   "Fine-tuning learning rate (the paper's 1e-5 is for a "
                   "pretrained base model; this small one needs more, and "
                   "at 1e-3 it stays at the all-O prior).")
FLAGS = flags.FLAGS

EXAMPLES = [
    "Germline mutations in BRCA1 and BRCA2 confer a high risk of breast and "
    "ovarian cancer, and carriers of these mutations are offered risk-"
    "reducing surgery.",
    "Duchenne muscular dystrophy is caused by mutations in the dystrophin "
    "gene; patients with cystic fibrosis or Huntington disease were used as "
    "controls.",
]

# A small ALBERT: factorized embeddings and one shared layer group, as the
# real configs, at a size that trains for minutes on two CPU cores.
DEMO_CONFIG = {
    "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "embedding_size": 64, "hidden_size": 128,
    "initializer_range": 0.02, "intermediate_size": 512,
    "max_position_embeddings": 512, "num_attention_heads": 4,
    "num_hidden_layers": 4, "num_hidden_groups": 1, "net_structure_type": 0,
    "gap_size": 0, "num_memory_blocks": 0, "inner_group_num": 1,
    "down_scale_factor": 1, "type_vocab_size": 2,
}


class Stage(object):
  """Runs one command, logging to a file; skips it when `done` exists."""

  def __init__(self, out_dir):
    self.out_dir = out_dir
    self.logs = os.path.join(out_dir, "logs")
    os.makedirs(self.logs, exist_ok=True)
    self.number = 0

  def run(self, title, argv, done):
    self.number += 1
    log = os.path.join(self.logs, "%d-%s.log" % (self.number,
                                                title.split()[0].lower()))
    print("\n[%d] %s" % (self.number, title), flush=True)
    print("    $ " + " ".join(_shell_quote(a) for a in argv), flush=True)
    if done and os.path.exists(done):
      print("    already done: %s" % done, flush=True)
      return
    started = time.time()
    with open(log, "w", encoding="utf-8") as f:
      proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    if proc.returncode != 0:
      with open(log, encoding="utf-8", errors="replace") as f:
        tail = f.read()[-3000:]
      sys.stderr.write(tail + "\n")
      raise SystemExit("demo: stage %d (%s) failed, exit %d; log: %s"
                       % (self.number, title, proc.returncode, log))
    print("    done in %.0f s (log: %s)" % (time.time() - started, log),
          flush=True)


def _shell_quote(arg):
  return "'%s'" % arg if any(c in arg for c in " *,;&|") else arg


def main(_):
  data_dir = paths.resolve_data_dir(FLAGS.data_dir)
  out = os.path.abspath(FLAGS.output_dir)
  os.makedirs(out, exist_ok=True)
  py = sys.executable
  stage = Stage(out)
  started = time.time()
  corpus = os.path.join(out, "corpus")
  stage.run("Prepare pretraining text from PubMed XML", [
      py, "-m", "bio.corpus.prepare", "--source=pubmed",
      "--input=%s/pubmed/*.xml.gz,%s/pubmed/updates/*.xml.gz" % (data_dir,
                                                                 data_dir),
      "--output_dir=" + corpus, "--num_workers=2"],
            os.path.join(corpus, "manifest.json"))

  spm_prefix = os.path.join(out, "vocab", "bio%d" % FLAGS.vocab_size)
  os.makedirs(os.path.dirname(spm_prefix), exist_ok=True)
  stage.run("Train the SentencePiece vocabulary", [
      py, "-m", "albert.train_spm", "--input=%s/*.txt" % corpus,
      "--model_prefix=" + spm_prefix, "--vocab_size=%d" % FLAGS.vocab_size],
            spm_prefix + ".model")

  config_file = os.path.join(out, "albert_config.json")
  with open(config_file, "w", encoding="utf-8") as f:
    json.dump(dict(DEMO_CONFIG, vocab_size=FLAGS.vocab_size), f, indent=2)

  records = os.path.join(out, "pretrain_data", "pubmed.tfrecord")
  os.makedirs(os.path.dirname(records), exist_ok=True)
  stage.run("Build pretraining TFRecords", [
      py, "create_pretraining_data.py", "--input_file=%s/*.txt" % corpus,
      "--output_file=" + records, "--spm_model_file=" + spm_prefix + ".model",
      "--vocab_file=" + spm_prefix + ".vocab",
      "--max_seq_length=%d" % FLAGS.max_seq_length,
      "--max_predictions_per_seq=20", "--dupe_factor=5"], records)

  pretrain_dir = os.path.join(out, "pretrain")
  stage.run("Pretrain a tiny ALBERT (LAMB)", [
      py, "run_pretraining.py", "--albert_config_file=" + config_file,
      "--input_file=" + records, "--output_dir=" + pretrain_dir,
      "--do_train", "--do_eval", "--train_batch_size=32",
      "--eval_batch_size=32", "--optimizer=lamb", "--learning_rate=0.005",
      "--max_seq_length=%d" % FLAGS.max_seq_length,
      "--max_predictions_per_seq=20",
      "--num_train_steps=%d" % FLAGS.pretrain_steps,
      "--num_warmup_steps=%d" % (FLAGS.pretrain_steps // 10),
      "--save_checkpoints_steps=%d" % FLAGS.pretrain_steps,
      "--iterations_per_loop=100", "--max_eval_steps=10"],
            os.path.join(pretrain_dir, "eval_results.txt"))
  _show(os.path.join(pretrain_dir, "eval_results.txt"), "    ")

  ner_dir = os.path.join(out, "ner_ncbi_disease")
  stage.run("Fine-tune on NCBI-disease, select on dev, test", [
      py, "run_ner.py", "--dataset=NCBI-disease", "--data_dir=" + data_dir,
      "--albert_config_file=" + config_file,
      "--spm_model_file=" + spm_prefix + ".model",
      "--init_checkpoint=%s/model.ckpt-%d" % (pretrain_dir,
                                              FLAGS.pretrain_steps),
      "--output_dir=" + ner_dir, "--do_train", "--do_eval", "--do_predict",
      "--max_seq_length=%d" % FLAGS.max_seq_length,
      "--train_batch_size=32", "--eval_batch_size=64",
      "--learning_rate=%g" % FLAGS.ner_learning_rate,
      "--train_step=%d" % FLAGS.ner_steps,
      "--warmup_step=%d" % (FLAGS.ner_steps // 10),
      "--save_checkpoints_steps=%d" % max(1, FLAGS.ner_steps // 3),
      "--iterations_per_loop=100"],
            os.path.join(ner_dir, "test_results.txt"))
  _show(os.path.join(ner_dir, "dev_results.txt"), "    ")
  _show(os.path.join(ner_dir, "test_results.txt"), "    ")

  export_dir = os.path.join(out, "export", "ner_ncbi_disease")
  stage.run("Export a SavedModel", [
      py, "-m", "bio.serving.export", "--model_dir=" + ner_dir,
      "--export_dir=" + export_dir],
            os.path.join(export_dir, "saved_model.pb"))

  examples = os.path.join(out, "examples.txt")
  with open(examples, "w", encoding="utf-8") as f:
    f.write("\n".join(EXAMPLES) + "\n")
  tagged = os.path.join(out, "examples.jsonl")
  stage.run("Tag two example abstracts", [
      py, "-m", "bio.serving.tag", "--saved_model=" + export_dir, "--input=" +
      examples, "--output=" + tagged, "--format=jsonl"], None)
  with open(tagged, encoding="utf-8") as f:
    for line in f:
      doc = json.loads(line)
      print("\n    %s" % doc["text"])
      for e in doc["entities"] or [{"text": "(no entity found)", "type": "",
                                    "start": "", "end": "", "score": ""}]:
        print("      %-40s %-8s [%s, %s) %s" % (e["text"], e["type"],
                                                 e["start"], e["end"],
                                                 e["score"]))
  print("\nDemo finished in %.1f min. Artifacts in %s:" %
        ((time.time() - started) / 60, out))
  for name, path in [("pretraining text", corpus),
                     ("SentencePiece model", spm_prefix + ".model"),
                     ("pretraining TFRecords", records),
                     ("pretrained checkpoint", pretrain_dir),
                     ("NER run (results, predictions)", ner_dir),
                     ("SavedModel", export_dir), ("tagged examples", tagged),
                     ("logs", stage.logs)]:
    print("  %-32s %s" % (name, path))


def _show(path, indent):
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    for line in f.read().rstrip().splitlines():
      print(indent + line)


if __name__ == "__main__":
  app.run(main)
