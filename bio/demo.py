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
import dataclasses
import functools
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from albert import file_utils
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


@dataclasses.dataclass(frozen=True)
class DemoPaths(object):
  """Where each stage's artifacts go under the demo's output directory."""
  out: str
  corpus: str
  spm_prefix: str
  config_file: str
  records: str
  pretrain_dir: str
  ner_dir: str
  export_dir: str
  examples: str
  tagged: str

  @classmethod
  def under(cls, out, vocab_size):
    join = functools.partial(os.path.join, out)
    return cls(out=out, corpus=join("corpus"),
               spm_prefix=join("vocab", "bio%d" % vocab_size),
               config_file=join("albert_config.json"),
               records=join("pretrain_data", "pubmed.tfrecord"),
               pretrain_dir=join("pretrain"), ner_dir=join("ner_ncbi_disease"),
               export_dir=join("export", "ner_ncbi_disease"),
               examples=join("examples.txt"), tagged=join("examples.jsonl"))


def main(_):
  data_dir = paths.resolve_data_dir(FLAGS.data_dir)
  out = os.path.abspath(FLAGS.output_dir)
  os.makedirs(out, exist_ok=True)
  demo = DemoPaths.under(out, FLAGS.vocab_size)
  stage = Stage(out)
  started = time.time()
  _prepare_text(stage, demo, data_dir)
  _train_vocabulary(stage, demo)
  _build_records(stage, demo)
  _pretrain(stage, demo)
  _fine_tune(stage, demo, data_dir)
  _export_and_tag(stage, demo)
  _print_artifacts(demo, stage.logs, started)


def _prepare_text(stage, demo, data_dir):
  stage.run("Prepare pretraining text from PubMed XML", [
      sys.executable, "-m", "bio.corpus.prepare", "--source=pubmed",
      "--input=%s/pubmed/*.xml.gz,%s/pubmed/updates/*.xml.gz" % (data_dir,
                                                                 data_dir),
      "--output_dir=" + demo.corpus, "--num_workers=2"],
            os.path.join(demo.corpus, "manifest.json"))


def _train_vocabulary(stage, demo):
  os.makedirs(os.path.dirname(demo.spm_prefix), exist_ok=True)
  stage.run("Train the SentencePiece vocabulary", [
      sys.executable, "-m", "albert.train_spm",
      "--input=%s/*.txt" % demo.corpus, "--model_prefix=" + demo.spm_prefix,
      "--vocab_size=%d" % FLAGS.vocab_size], demo.spm_prefix + ".model")


def _build_records(stage, demo):
  file_utils.atomic_write_json(
      demo.config_file, dict(DEMO_CONFIG, vocab_size=FLAGS.vocab_size))
  os.makedirs(os.path.dirname(demo.records), exist_ok=True)
  stage.run("Build pretraining TFRecords", [
      sys.executable, "create_pretraining_data.py",
      "--input_file=%s/*.txt" % demo.corpus, "--output_file=" + demo.records,
      "--spm_model_file=" + demo.spm_prefix + ".model",
      "--vocab_file=" + demo.spm_prefix + ".vocab",
      "--max_seq_length=%d" % FLAGS.max_seq_length,
      "--max_predictions_per_seq=20", "--dupe_factor=5"], demo.records)


def _pretrain(stage, demo):
  results = os.path.join(demo.pretrain_dir, "eval_results.txt")
  stage.run("Pretrain a tiny ALBERT (LAMB)", [
      sys.executable, "run_pretraining.py",
      "--albert_config_file=" + demo.config_file,
      "--input_file=" + demo.records, "--output_dir=" + demo.pretrain_dir,
      "--do_train", "--do_eval", "--train_batch_size=32",
      "--eval_batch_size=32", "--optimizer=lamb", "--learning_rate=0.005",
      "--max_seq_length=%d" % FLAGS.max_seq_length,
      "--max_predictions_per_seq=20",
      "--num_train_steps=%d" % FLAGS.pretrain_steps,
      "--num_warmup_steps=%d" % (FLAGS.pretrain_steps // 10),
      "--save_checkpoints_steps=%d" % FLAGS.pretrain_steps,
      "--iterations_per_loop=100", "--max_eval_steps=10"], results)
  _show(results, "    ")


def _fine_tune(stage, demo, data_dir):
  stage.run("Fine-tune on NCBI-disease, select on dev, test", [
      sys.executable, "run_ner.py", "--dataset=NCBI-disease",
      "--data_dir=" + data_dir, "--albert_config_file=" + demo.config_file,
      "--spm_model_file=" + demo.spm_prefix + ".model",
      "--init_checkpoint=%s/model.ckpt-%d" % (demo.pretrain_dir,
                                              FLAGS.pretrain_steps),
      "--output_dir=" + demo.ner_dir, "--do_train", "--do_eval",
      "--do_predict", "--max_seq_length=%d" % FLAGS.max_seq_length,
      "--train_batch_size=32", "--eval_batch_size=64",
      "--learning_rate=%g" % FLAGS.ner_learning_rate,
      "--train_step=%d" % FLAGS.ner_steps,
      "--warmup_step=%d" % (FLAGS.ner_steps // 10),
      "--save_checkpoints_steps=%d" % max(1, FLAGS.ner_steps // 3),
      "--iterations_per_loop=100"],
            os.path.join(demo.ner_dir, "test_results.txt"))
  _show(os.path.join(demo.ner_dir, "dev_results.txt"), "    ")
  _show(os.path.join(demo.ner_dir, "test_results.txt"), "    ")


def _export_and_tag(stage, demo):
  stage.run("Export a SavedModel", [
      sys.executable, "-m", "bio.serving.export",
      "--model_dir=" + demo.ner_dir, "--export_dir=" + demo.export_dir],
            os.path.join(demo.export_dir, "saved_model.pb"))
  file_utils.atomic_write(demo.examples, "\n".join(EXAMPLES) + "\n")
  stage.run("Tag two example abstracts", [
      sys.executable, "-m", "bio.serving.tag",
      "--saved_model=" + demo.export_dir, "--input=" + demo.examples,
      "--output=" + demo.tagged, "--format=jsonl"], None)
  with open(demo.tagged, encoding="utf-8") as f:
    for line in f:
      _print_tagged(json.loads(line))


def _print_tagged(doc):
  print("\n    %s" % doc["text"])
  for e in doc["entities"] or [{"text": "(no entity found)", "type": "",
                                "start": "", "end": "", "score": ""}]:
    print("      %-40s %-8s [%s, %s) %s" % (e["text"], e["type"], e["start"],
                                             e["end"], e["score"]))


def _print_artifacts(demo, logs, started):
  print("\nDemo finished in %.1f min. Artifacts in %s:" %
        ((time.time() - started) / 60, demo.out))
  for name, path in [("pretraining text", demo.corpus),
                     ("SentencePiece model", demo.spm_prefix + ".model"),
                     ("pretraining TFRecords", demo.records),
                     ("pretrained checkpoint", demo.pretrain_dir),
                     ("NER run (results, predictions)", demo.ner_dir),
                     ("SavedModel", demo.export_dir),
                     ("tagged examples", demo.tagged), ("logs", logs)]:
    print("  %-32s %s" % (name, path))


def _show(path, indent):
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    for line in f.read().rstrip().splitlines():
      print(indent + line)


if __name__ == "__main__":
  app.run(main)
