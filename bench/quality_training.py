r"""Quality checks of the faster training paths (issue 13), on real data.

Not a test (minutes of CPU): run it by hand, under the bench lock.

  flock /tmp/bioalbert-bench.lock .venv/bin/python bench/quality_training.py \
      --work_dir=/tmp/quality_training

1. Data: PubMed sample abstracts of the shared data (the corpus builder's
   cleaning and sentence splitting), 1 in 10 documents held out; a
   SentencePiece vocabulary of 1000 pieces on them; pretraining TFRecords
   of both parts by create_pretraining_data.py (seq 128, 20 masked
   positions, dupe factor 2).
2. Pretraining, bf16 vs fp32: the tiny config (albert_tiny.json, no
   dropout), LAMB, batch 32, --pretrain_steps steps, from one initial
   checkpoint and on the same batches in the same order, once float32 and
   once with explicit bfloat16 casts (`compute_dtype`, the TPU/GPU path;
   on this AVX2 CPU `--precision=bf16` is oneDNN's rewrite, which
   TensorFlow skips without AVX512-BF16/AMX, so it would compare float32
   with itself). Then both are evaluated (float32 eval graph) on the
   held-out records; the report gives the losses and their relative
   difference (goal: within 2%).
3. NER, length-bucketed vs fixed padding: run_ner.py on NCBI-disease twice
   with the same seed and budget (--ner_steps, dev F1 every half), from the
   fp32 checkpoint of step 2, once with length-bucketed batches (default)
   and once with --nolength_bucketing; the report gives the dev F1 of the
   chosen checkpoint of each.

Outputs in --work_dir: corpus/, spm/, records/ (reused by a re-run),
init/, pretrain-fp32/, pretrain-bf16cast/, ner-bucketed/, ner-fixed/ (made
afresh every run) and quality.md, the printed report (written atomically).
"""
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf

from albert import estimator_utils
from albert import file_utils
from albert import modeling
from albert import precision
from albert import run_pretraining
from albert import train_spm
from bio import paths
from bio.corpus import pubmed
from bio.text import clean
from bio.text import sentences as sentence_splitter
# pylint: enable=wrong-import-position

flags.DEFINE_string("work_dir", None, "Where every artifact goes.")
flags.DEFINE_string("data_dir", None, "Shared data (default: "
                    "$BIOALBERT_DATA_DIR, then ../shared/data).")
flags.DEFINE_integer("pretrain_steps", 300, "Pretraining steps of each run.")
flags.DEFINE_integer("ner_steps", 400, "Fine-tuning steps of each NER run.")
flags.DEFINE_integer("seed", 1, "Seed of both NER runs.")
flags.mark_flag_as_required("work_dir")
FLAGS = flags.FLAGS

CONFIG = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
SEQ = 128
PREDICTIONS = 20
BATCH = 32
EVAL_BATCHES = 20
PUBMED_FILES = ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz",
                "pubmed21n0001-small.xml.gz")


def _run(argv, log_path):
  """Runs a command-line tool of the project; its output goes to log_path."""
  with open(log_path, "w") as log:
    proc = subprocess.run([sys.executable] + argv, cwd=ROOT, stdout=log,
                          stderr=subprocess.STDOUT)
  if proc.returncode:
    raise RuntimeError("%s failed (exit %d); see %s" % (
        argv[0], proc.returncode, log_path))


def build_data(work_dir):
  """(spm model, train records, held-out records), made once."""
  corpus = os.path.join(work_dir, "corpus")
  records = os.path.join(work_dir, "records")
  spm_prefix = os.path.join(work_dir, "spm", "bio1k")
  outputs = [os.path.join(records, name + ".tfrecord")
             for name in ("train", "heldout")]
  if all(os.path.isfile(p) for p in outputs + [spm_prefix + ".model"]):
    return spm_prefix + ".model", outputs[0], outputs[1]
  documents = []
  root = paths.resolve_data_dir(FLAGS.data_dir)
  for name in PUBMED_FILES:
    for article in pubmed.read_file(os.path.join(root, "pubmed", name)):
      lines = clean.clean_lines(pubmed.article_blocks(article))
      doc = sentence_splitter.split_lines(lines)
      if len(doc) >= 2:
        documents.append(doc)
  random.Random(0).shuffle(documents)
  held = len(documents) // 10
  parts = {"heldout": documents[:held], "train": documents[held:]}
  os.makedirs(corpus, exist_ok=True)
  for name, docs in parts.items():
    file_utils.atomic_write(os.path.join(corpus, name + ".txt"),
                            "\n".join("\n".join(d) + "\n" for d in docs))
  os.makedirs(os.path.dirname(spm_prefix), exist_ok=True)
  train_spm.train_sentencepiece_from_texts(
      ["\n".join(d) for d in parts["train"]], spm_prefix, vocab_size=1000)
  shutil.rmtree(records, ignore_errors=True)
  _run(["create_pretraining_data.py",
        "--input_file=%s/*.txt" % corpus, "--output_dir=" + records,
        "--spm_model_file=" + spm_prefix + ".model",
        "--vocab_file=" + spm_prefix + ".vocab",
        "--max_seq_length=%d" % SEQ,
        "--max_predictions_per_seq=%d" % PREDICTIONS, "--dupe_factor=2",
        "--num_workers=1", "--random_seed=12345"],
       os.path.join(work_dir, "create_pretraining_data.log"))
  logging.info("data: %d train / %d held-out documents", len(parts["train"]),
               held)
  return spm_prefix + ".model", outputs[0], outputs[1]


def tiny_config():
  config = modeling.AlbertConfig.from_json_file(CONFIG)
  assert not config.hidden_dropout_prob
  assert not config.attention_probs_dropout_prob
  return config


def write_initial_checkpoint(path):
  """The weights both pretraining runs start from (seeded)."""
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(0)
    feats = {
        "input_ids": tf.zeros([1, SEQ], tf.int32),
        "input_mask": tf.ones([1, SEQ], tf.int32),
        "segment_ids": tf.zeros([1, SEQ], tf.int32),
        "masked_lm_positions": tf.zeros([1, PREDICTIONS], tf.int32),
        "masked_lm_ids": tf.zeros([1, PREDICTIONS], tf.int32),
        "masked_lm_weights": tf.ones([1, PREDICTIONS], tf.float32),
        "next_sentence_labels": tf.zeros([1, 1], tf.int32),
    }
    model_fn = run_pretraining.model_fn_builder(
        tiny_config(), None, 1e-3, 10, 0, use_tpu=False,
        use_one_hot_embeddings=False, optimizer="lamb", poly_power=1.0,
        start_warmup_step=0)
    model_fn(feats, None, tf.estimator.ModeKeys.TRAIN, {})
    saver = tf.train.Saver(tf.trainable_variables())
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      saver.save(sess, path)
  return path


def pretrain(work_dir, name, compute_dtype, spm_model, train_file,
             heldout_file, init):
  """Trains one arm; returns (eval metrics on held-out data, seconds)."""
  output_dir = os.path.join(work_dir, "pretrain-" + name)
  shutil.rmtree(output_dir, ignore_errors=True)
  options = run_pretraining.PretrainingOptions(
      albert_config_file=CONFIG, input_file=train_file,
      output_dir=output_dir, init_checkpoint=init,
      spm_model_file=spm_model, max_seq_length=SEQ,
      max_predictions_per_seq=PREDICTIONS, train_batch_size=BATCH,
      eval_batch_size=BATCH, learning_rate=5e-3,
      num_train_steps=FLAGS.pretrain_steps,
      num_warmup_steps=FLAGS.pretrain_steps // 10,
      tpu=estimator_utils.TpuOptions(
          iterations_per_loop=100,
          save_checkpoints_steps=FLAGS.pretrain_steps))
  plan = run_pretraining.prepare(options)
  training = dataclasses.replace(precision.plan(options.training),
                                 compute_dtype=compute_dtype)
  estimator = run_pretraining.make_estimator(options, plan, training)

  def batches(path):
    # Records in file order, repeated: both arms see the same batches.
    return run_pretraining.input_fn_builder(
        [path], SEQ, PREDICTIONS, is_training=False)

  started = time.time()
  estimator.train(batches(train_file), max_steps=FLAGS.pretrain_steps)
  seconds = time.time() - started
  # Evaluation always builds the float32 graph of the checkpoint: the same
  # measure of both arms' weights.
  eval_estimator = run_pretraining.make_estimator(options, plan)
  result = eval_estimator.evaluate(batches(heldout_file), steps=EVAL_BATCHES,
                                   checkpoint_path=estimator.latest_checkpoint())
  return {k: float(v) for k, v in result.items()}, seconds


def ner(work_dir, name, spm_model, init, extra):
  """One run_ner.py run; returns (chosen dev record, seconds)."""
  output_dir = os.path.join(work_dir, "ner-" + name)
  shutil.rmtree(output_dir, ignore_errors=True)
  argv = ["run_ner.py", "--dataset=NCBI-disease",
          "--albert_config_file=" + CONFIG, "--spm_model_file=" + spm_model,
          "--init_checkpoint=" + init, "--output_dir=" + output_dir,
          "--do_train", "--do_eval", "--max_seq_length=%d" % SEQ,
          "--train_batch_size=32", "--eval_batch_size=64",
          "--learning_rate=1e-3", "--train_step=%d" % FLAGS.ner_steps,
          "--warmup_step=%d" % (FLAGS.ner_steps // 10),
          "--save_checkpoints_steps=%d" % (FLAGS.ner_steps // 2),
          "--iterations_per_loop=100", "--seed=%d" % FLAGS.seed] + extra
  if FLAGS.data_dir:
    argv.append("--data_dir=" + FLAGS.data_dir)
  started = time.time()
  _run(argv, os.path.join(work_dir, "ner-%s.log" % name))
  seconds = time.time() - started
  with open(os.path.join(output_dir, "dev_results.json")) as f:
    return json.load(f)["chosen"], seconds


def relative(a, b):
  return abs(a - b) / abs(b)


def report(pre, ner_runs):
  fp32, bf16 = pre["fp32"][0], pre["bf16cast"][0]
  lines = [
      "Pretraining: albert_tiny, LAMB, batch %d, seq %d, %d steps, same "
      "initial weights and batches; held-out eval %d x %d examples."
      % (BATCH, SEQ, FLAGS.pretrain_steps, EVAL_BATCHES, BATCH),
      "",
      "| arm | train s | MLM loss | SOP loss | MLM accuracy |",
      "|---|---|---|---|---|"]
  for name in ("fp32", "bf16cast"):
    r, seconds = pre[name]
    lines.append("| %s | %.0f | %.4f | %.4f | %.4f |" % (
        name, seconds, r["masked_lm_loss"], r["sentence_order_loss"],
        r["masked_lm_accuracy"]))
  lines += [
      "",
      "bf16 vs fp32, relative difference: MLM loss %.2f%%, SOP loss %.2f%% "
      "(goal: within 2%%)" % (
          100 * relative(bf16["masked_lm_loss"], fp32["masked_lm_loss"]),
          100 * relative(bf16["sentence_order_loss"],
                         fp32["sentence_order_loss"])),
      "",
      "NER: NCBI-disease, from the fp32 checkpoint, seed %d, %d steps, batch "
      "32, max_seq_length %d; dev F1 of the chosen checkpoint." % (
          FLAGS.seed, FLAGS.ner_steps, SEQ),
      "",
      "| batches | train+dev s | chosen step | dev P | dev R | dev F1 |",
      "|---|---|---|---|---|---|"]
  for name in ("bucketed", "fixed"):
    r, seconds = ner_runs[name]
    lines.append("| %s | %.0f | %d | %.4f | %.4f | %.4f |" % (
        name, seconds, r["step"], r["conlleval_precision"],
        r["conlleval_recall"], r["conlleval_f1"]))
  f1 = {k: v[0]["conlleval_f1"] for k, v in ner_runs.items()}
  lines.append("")
  lines.append("dev F1 bucketed - fixed: %+.4f" % (f1["bucketed"]
                                                   - f1["fixed"]))
  return "\n".join(lines) + "\n"


def main(_):
  logging.set_verbosity(logging.WARNING)
  tf.get_logger().setLevel("ERROR")
  work_dir = os.path.abspath(FLAGS.work_dir)
  os.makedirs(work_dir, exist_ok=True)
  try:
    spm_model, train_file, heldout_file = build_data(work_dir)
  except (FileNotFoundError, RuntimeError) as e:
    sys.stderr.write("quality_training.py: error: %s\n" % e)
    sys.exit(1)
  init_dir = os.path.join(work_dir, "init")
  shutil.rmtree(init_dir, ignore_errors=True)
  init = write_initial_checkpoint(os.path.join(init_dir, "model.ckpt"))
  pre = {}
  for name, dtype in (("fp32", tf.float32), ("bf16cast", tf.bfloat16)):
    pre[name] = pretrain(work_dir, name, dtype, spm_model, train_file,
                         heldout_file, init)
    print("pretrain %s: %s" % (name, json.dumps(pre[name][0])), flush=True)
  fp32_checkpoint = os.path.join(work_dir, "pretrain-fp32",
                                 "model.ckpt-%d" % FLAGS.pretrain_steps)
  ner_runs = {}
  try:
    for name, extra in (("bucketed", []), ("fixed", ["--nolength_bucketing"])):
      ner_runs[name] = ner(work_dir, name, spm_model, fp32_checkpoint, extra)
      print("ner %s: %s" % (name, json.dumps(ner_runs[name][0])), flush=True)
  except RuntimeError as e:
    sys.stderr.write("quality_training.py: error: %s\n" % e)
    sys.exit(1)
  text = report(pre, ner_runs)
  file_utils.atomic_write(os.path.join(work_dir, "quality.md"), text)
  print(text)


if __name__ == "__main__":
  app.run(main)
