"""Fine-tune ALBERT for NER, select the checkpoint on dev, test it.

The orchestration behind `run_ner.py` (and `bio.ner.run_all`):

1. Read and check every input before writing anything (labels, splits,
   tokenizer, config), so bad input leaves no partial results.
2. Train with TPUEstimator. With --do_eval, training runs in chunks of
   --save_checkpoints_steps and every checkpoint is evaluated on dev as soon
   as it is written (entity F1 via bio.ner.metrics); the best one is copied
   to `output_dir/best/` so that --keep_checkpoint_max can rotate the
   others away freely. The step-0 checkpoint (before any fine-tuning) is
   not a candidate.
3. Predict the test set with the selected checkpoint.

Outputs in output_dir (each written atomically): label_map.json,
dev_results.txt/.json, best_checkpoint.txt (path of the selected checkpoint
relative to output_dir), run_config.json (tokenizer, config and window
settings, for export), test_results.txt/.json, test_predictions.txt.
"""
import dataclasses
import json
import os
import time
from typing import Optional

from absl import flags
from absl import logging
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import estimator_utils
from albert import file_utils
from albert import modeling
from albert import tokenization
from bio.ner import iob
from bio.ner import features as ner_features
from bio.ner import metrics as ner_metrics
from bio.ner import model as ner_model
from bio.ner import run_dir
from bio.ner import datasets


class NerRunError(ValueError):
  """A problem with the flags or inputs of a run (reported without a trace)."""


# What the command-line tools report as one line, without a trace.
USER_ERRORS = (iob.NerFormatError, NerRunError, FileNotFoundError,
               file_utils.DirLockedError)


@dataclasses.dataclass(frozen=True)
class NerOptions:
  """Everything a fine-tuning run depends on (the flags of run_ner.py)."""
  output_dir: Optional[str] = None
  data_dir: Optional[str] = None
  dataset: Optional[str] = None
  collapse_types: bool = False
  albert_config_file: Optional[str] = None
  init_checkpoint: Optional[str] = None
  tokenizer: common_flags.TokenizerOptions = common_flags.TokenizerOptions()
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False
  max_seq_length: int = 512
  train_batch_size: int = 32
  eval_batch_size: int = 16
  predict_batch_size: int = 16
  learning_rate: float = 1e-5
  train_step: int = 5336
  warmup_step: int = 320
  optimizer: str = "adamw"
  seed: Optional[int] = None
  overwrite: bool = False
  tpu: estimator_utils.TpuOptions = estimator_utils.TpuOptions(
      iterations_per_loop=200, save_checkpoints_steps=200)


def define_flags(flag_values=flags.FLAGS):
  """The flags of run_ner.py; defaults are the paper's Table III."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_string(
      "data_dir", None,
      "Directory with train.tsv, devel.tsv (or dev.tsv) and test.tsv. With "
      "--dataset, the data root searched for the dataset instead.", **kw)
  flags.DEFINE_string(
      "dataset", None,
      "A dataset name from bio.ner.datasets (e.g. NCBI-disease), found under "
      "the data root (--data_dir, $BIOALBERT_DATA_DIR or ../shared/data).",
      **kw)
  flags.DEFINE_bool(
      "collapse_types", False,
      "Drop entity types (B-Disease -> B), as BioBERT's preprocessed copies "
      "do, for comparison with published numbers.", **kw)
  common_flags.define_tokenizer_flags(flag_values)
  common_flags.define_model_flags(init_checkpoint_help=(
      "Encoder or pretraining checkpoint (a prefix, or a directory whose "
      "latest checkpoint is taken): every bert/ variable is restored from "
      "it; the classifier always starts fresh."), **kw)
  common_flags.define_output_dir_flag(
      "Where checkpoints and results are written.", **kw)
  flags.DEFINE_bool(
      "overwrite", False,
      "Start afresh: remove the files an earlier run_ner.py run wrote in "
      "--output_dir (nothing else) before training.", **kw)
  flags.DEFINE_bool("do_train", False, "Fine-tune on the train split.", **kw)
  flags.DEFINE_bool(
      "do_eval", False,
      "Evaluate every checkpoint on dev and select the best by entity F1.",
      **kw)
  flags.DEFINE_bool("do_predict", False,
                    "Tag the test split with the selected checkpoint.", **kw)
  common_flags.define_max_seq_length_flag(
      512, "Pieces per window incl. [CLS]/[SEP]; longer sentences are split "
      "into overlapping windows, never truncated.", **kw)
  flags.DEFINE_integer("train_batch_size", 32, "Batch size for training.",
                       **kw)
  flags.DEFINE_integer("eval_batch_size", 16,
                       "Batch size for dev evaluation.", **kw)
  flags.DEFINE_integer("predict_batch_size", 16,
                       "Batch size for test prediction.", **kw)
  flags.DEFINE_float("learning_rate", 1e-5, "Peak learning rate.", **kw)
  flags.DEFINE_integer("train_step", 5336, "Number of training steps.", **kw)
  flags.DEFINE_integer("warmup_step", 320, "Linear warm-up steps.", **kw)
  flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "Optimizer.",
                    **kw)
  flags.DEFINE_integer(
      "seed", None,
      "Seed of the TF graph (classifier initialisation, dropout) and of the "
      "training-data shuffle; unset: a different run each time.", **kw)
  common_flags.define_tpu_flags(iterations_per_loop=200,
                                save_checkpoints_steps=200,
                                keep_checkpoint_max=5, **kw)


def options_from_flags(flag_values):
  """A `NerOptions` from parsed flags (those of `define_flags`)."""
  fields = {f.name for f in dataclasses.fields(NerOptions)}
  fields -= {"tokenizer", "tpu"}
  return NerOptions(
      tokenizer=common_flags.TokenizerOptions.from_flags(flag_values),
      tpu=estimator_utils.TpuOptions.from_flags(flag_values),
      **{name: flag_values[name].value for name in fields})


# ---------------------------------------------------------------------------
# Small helpers


def summarize(results):
  """Flat P/R/F1 numbers from a bio.ner.metrics.evaluate result."""
  out = {}
  for mode in ("conlleval", "strict"):
    overall = results[mode]["overall"]
    for key in ("precision", "recall", "f1"):
      out["%s_%s" % (mode, key)] = float(overall[key])
  out["token_accuracy"] = float(results["token_accuracy"])
  return out


# ---------------------------------------------------------------------------
# Inputs


class _Inputs(object):
  """Everything read and checked before any output is written."""

  def __init__(self, opts):
    self.opts = opts
    if opts.dataset:
      self.data_dir = datasets.resolve_dataset_dir(opts.dataset,
                                                       opts.data_dir)
    else:
      self.data_dir = opts.data_dir
    self.splits = datasets.load(self.data_dir, opts.collapse_types,
                                dataset=opts.dataset)
    self.paths = {split: iob.split_path(self.data_dir, split)
                  for split in self.splits}

    train_labels = iob.get_label_list(self.splits["train"])
    self.label_list = run_dir.read_label_list(opts.output_dir)
    if self.label_list is None:
      self.label_list = train_labels
    elif opts.do_train and self.label_list != train_labels:
      raise NerRunError(
          "%s holds labels %s but the training data %s has %s: use a fresh "
          "--output_dir for a different dataset" %
          (os.path.join(opts.output_dir, run_dir.LABEL_MAP_FILE),
           self.label_list, self.paths["train"], train_labels))
    self.label_map = {label: i for i, label in enumerate(self.label_list)}

    try:
      self.albert_config = modeling.AlbertConfig.from_json_file(
          opts.albert_config_file)
    except (ValueError, tf.errors.OpError) as e:
      raise NerRunError("bad --albert_config_file %s: %s" %
                        (opts.albert_config_file, e)) from e
    try:
      tokenization.validate_case_matches_checkpoint(
          opts.tokenizer.do_lower_case, opts.init_checkpoint)
      tokenizer = tokenization.FullTokenizer(**opts.tokenizer.as_kwargs())
    except ValueError as e:
      raise NerRunError(str(e)) from e
    if len(tokenizer.vocab) > self.albert_config.vocab_size:
      raise NerRunError(
          "the tokenizer has %d pieces but %s has vocab_size %d" %
          (len(tokenizer.vocab), opts.albert_config_file,
           self.albert_config.vocab_size))
    modeling.check_seq_length(opts.max_seq_length, self.albert_config,
                              opts.albert_config_file, NerRunError)
    self.encoder = ner_features.PieceEncoder(tokenizer,
                                                opts.tokenizer.do_lower_case)

  def features(self, split):
    return ner_features.convert_sentences(
        self.splits[split], self.label_map, self.opts.max_seq_length,
        self.encoder, allow_unknown_labels=(split != "train"), name=split)


def _abs(path):
  """Absolute local paths (a run dir may be used from elsewhere); URLs kept."""
  if not path or "://" in path:
    return path
  return os.path.abspath(path)


def run_config(opts, inputs):
  """The settings recorded in run_config.json."""
  return {
      "albert_config_file": _abs(opts.albert_config_file),
      "spm_model_file": _abs(opts.tokenizer.spm_model_file),
      "vocab_file": _abs(opts.tokenizer.vocab_file),
      "do_lower_case": opts.tokenizer.do_lower_case,
      "max_seq_length": opts.max_seq_length,
      "window_stride": None,  # None: half a window (bio.ner.features)
      "collapse_types": opts.collapse_types,
      "data_dir": _abs(inputs.data_dir),
      "dataset": opts.dataset,
      "init_checkpoint": _abs(opts.init_checkpoint),
      "label_list": inputs.label_list,
  }


def check_options(opts):
  """Raises NerRunError for inconsistent flags."""
  if not (opts.do_train or opts.do_eval or opts.do_predict):
    raise NerRunError("at least one of --do_train, --do_eval or --do_predict "
                      "must be true")
  for name in ("output_dir", "albert_config_file"):
    if not getattr(opts, name):
      raise NerRunError("--%s is required" % name)
  if not (opts.data_dir or opts.dataset):
    raise NerRunError("give --data_dir (a dataset directory) or --dataset")
  if not (opts.tokenizer.spm_model_file or opts.tokenizer.vocab_file):
    raise NerRunError("give --spm_model_file (or --vocab_file)")
  positive = {name: getattr(opts, name) for name in (
      "max_seq_length", "train_batch_size", "eval_batch_size",
      "predict_batch_size", "train_step")}
  positive["save_checkpoints_steps"] = opts.tpu.save_checkpoints_steps
  for name, value in positive.items():
    if value is not None and value < 1:
      raise NerRunError("--%s must be positive" % name)
  if opts.max_seq_length < 3:
    raise NerRunError("--max_seq_length must be at least 3")
  if opts.warmup_step < 0:
    raise NerRunError("--warmup_step must be >= 0")


# ---------------------------------------------------------------------------
# Prediction and dev selection


def predict_sentences(estimator, features, sentences, input_file, checkpoint,
                      id_to_label, name):
  """Word-level predicted labels of `sentences` with `checkpoint`."""
  input_fn = ner_features.file_based_input_fn_builder(
      input_file, len(features[0].input_ids), is_training=False,
      drop_remainder=True)
  started = time.time()
  predicted = []
  log_every = 2000
  for i, result in enumerate(estimator.predict(
      input_fn, predict_keys=["predictions"], checkpoint_path=checkpoint)):
    if i < len(features):
      predicted.append(result["predictions"])
    if (i + 1) % log_every == 0:
      rate = (i + 1) / max(time.time() - started, 1e-9)
      logging.info("%s: %d/%d windows predicted, %.1f windows/s, ETA %s",
                   name, i + 1, len(features), rate,
                   estimator_utils.format_seconds(
                       (len(features) - i - 1) / rate))
  elapsed = time.time() - started
  logging.info("%s: predicted %d sentences (%d windows) with %s in %.1fs "
               "(%.1f sentences/s)", name, len(sentences), len(features),
               os.path.basename(checkpoint), elapsed,
               len(sentences) / max(elapsed, 1e-9))
  return ner_features.assemble_predictions(
      features, predicted, [len(s.tokens) for s in sentences], id_to_label)


def write_padded_tfrecord(features, batch_size, max_seq_length, path):
  padded = ner_features.pad_to_batch_multiple(features, batch_size,
                                              max_seq_length)
  ner_features.write_tfrecord(padded, path)


class DevSelector(object):
  """Evaluates checkpoints on dev as they appear and keeps the best."""

  def __init__(self, opts, estimator, sentences, features, input_file,
               label_list, dev_path):
    self.opts = opts
    self.estimator = estimator
    self.sentences = sentences
    self.features = features
    self.input_file = input_file
    self.label_list = label_list
    self.dev_path = dev_path
    self.records = []  # dicts: step, checkpoint, metrics...
    self.best = None
    self.best_checkpoint = None

  def evaluated_steps(self):
    return {r["step"] for r in self.records}

  def evaluate_new(self):
    """Evaluates every checkpoint (step > 0) not evaluated yet."""
    for step, prefix in run_dir.list_checkpoints(self.opts.output_dir):
      if step == 0 or step in self.evaluated_steps():
        continue
      self.evaluate(step, prefix)

  def evaluate(self, step, prefix):
    started = time.time()
    predicted = predict_sentences(self.estimator, self.features,
                                  self.sentences, self.input_file, prefix,
                                  self.label_list, "dev")
    gold = [s.labels for s in self.sentences]
    record = {"step": step, "checkpoint": os.path.basename(prefix)}
    record.update(summarize(ner_metrics.evaluate(gold, predicted)))
    record["seconds"] = round(time.time() - started, 2)
    self.records.append(record)
    logging.info("dev @ step %d: P %.4f R %.4f F1 %.4f (strict F1 %.4f)",
                 step, record["conlleval_precision"],
                 record["conlleval_recall"], record["conlleval_f1"],
                 record["strict_f1"])
    if self.best is None or record["conlleval_f1"] > self.best["conlleval_f1"]:
      self._keep(record, prefix)
    self.write()

  def _keep(self, record, prefix):
    self.best_checkpoint = run_dir.record_best(self.opts.output_dir, prefix)
    self.best = record

  def write(self, final=False):
    lines = [
        "# Dev set: %s (%d sentences)" % (self.dev_path, len(self.sentences)),
        "# Selection: entity-level F1, seqeval conlleval-compatible mode.",
        "%-8s %-22s %9s %9s %9s %10s %10s" % (
            "step", "checkpoint", "P", "R", "F1", "strict_F1", "token_acc"),
    ]
    for r in sorted(self.records, key=lambda r: r["step"]):
      mark = "  <- chosen" if r is self.best else ""
      lines.append("%-8d %-22s %9.4f %9.4f %9.4f %10.4f %10.4f%s" % (
          r["step"], r["checkpoint"], r["conlleval_precision"],
          r["conlleval_recall"], r["conlleval_f1"], r["strict_f1"],
          r["token_accuracy"], mark))
    if self.best is not None:
      lines.append("chosen: %s (step %d, dev F1 %.4f)%s" % (
          self.best["checkpoint"], self.best["step"], self.best["conlleval_f1"],
          "" if final else " [so far]"))
    file_utils.atomic_write(os.path.join(self.opts.output_dir, "dev_results.txt"),
                 "\n".join(lines) + "\n")
    file_utils.atomic_write(
        os.path.join(self.opts.output_dir, "dev_results.json"),
        json.dumps({"dev_file": self.dev_path, "records": self.records,
                    "chosen": self.best,
                    "best_checkpoint": run_dir.BEST_DIR + "/" + self.best["checkpoint"]
                                       if self.best else None,
                    "final": final}, indent=2) + "\n")


# ---------------------------------------------------------------------------
# The run


def train(opts, estimator, train_file, num_examples, selector=None):
  """Trains to --train_step; with a selector, evaluates each new checkpoint."""
  input_fn = ner_features.file_based_input_fn_builder(
      train_file, opts.max_seq_length, is_training=True, drop_remainder=True,
      shuffle_buffer=num_examples)
  every = max(1, min(100, opts.tpu.save_checkpoints_steps // 2))
  started = time.time()
  existing = run_dir.list_checkpoints(opts.output_dir)
  first_step = existing[-1][0] if existing else 0
  if selector is None:
    targets = [opts.train_step]
  else:
    # One chunk per checkpoint, so each is evaluated before rotation can
    # delete it and the dev curve shows up in the log as training goes.
    targets = list(range(opts.tpu.save_checkpoints_steps, opts.train_step,
                         opts.tpu.save_checkpoints_steps)) + [opts.train_step]
  for target in targets:
    done = run_dir.list_checkpoints(opts.output_dir)
    if done and done[-1][0] >= target:
      continue
    hook = estimator_utils.ThroughputHook(opts.train_batch_size,
                                          opts.train_step, every)
    estimator.train(input_fn, max_steps=target, hooks=[hook])
    if selector is not None:
      selector.evaluate_new()
  if selector is not None:
    selector.evaluate_new()  # e.g. checkpoints left by an interrupted run
  elapsed = time.time() - started
  steps = max(opts.train_step - first_step, 0)
  timing = {"train_seconds": round(elapsed, 1), "train_steps": steps}
  if steps:
    timing["train_examples_per_sec_incl_eval"] = round(
        steps * opts.train_batch_size / max(elapsed, 1e-9), 1)
  logging.info("training to step %d done in %s", opts.train_step,
               estimator_utils.format_seconds(elapsed))
  return timing


def _select_without_dev(opts):
  """The checkpoint to test when there is no dev selection in this run."""
  best = run_dir.read_best_checkpoint(opts.output_dir)
  if best and tf.io.gfile.exists(best + ".index"):
    return best
  found = [c for c in run_dir.list_checkpoints(opts.output_dir) if c[0] > 0]
  if not found:
    raise NerRunError("no fine-tuned checkpoint in %s: run with --do_train "
                      "first" % opts.output_dir)
  return found[-1][1]


def write_test_outputs(opts, inputs, predicted, checkpoint, extra):
  """test_results.txt/.json and test_predictions.txt, each atomically."""
  sentences = inputs.splits["test"]
  gold = [s.labels for s in sentences]
  results = ner_metrics.evaluate(gold, predicted)
  summary = summarize(results)
  num_tokens = sum(len(s.tokens) for s in sentences)
  header = [
      "# BioALBERT NER test results",
      "test file: %s" % inputs.paths["test"],
      "checkpoint: %s" % checkpoint,
      "sentences: %d, tokens: %d" % (len(sentences), num_tokens),
      "",
      "overall (conlleval-compatible): precision %.4f recall %.4f f1 %.4f" % (
          summary["conlleval_precision"], summary["conlleval_recall"],
          summary["conlleval_f1"]),
      "overall (strict IOB2): precision %.4f recall %.4f f1 %.4f" % (
          summary["strict_precision"], summary["strict_recall"],
          summary["strict_f1"]),
      "token accuracy: %.4f" % summary["token_accuracy"],
      "",
  ]
  file_utils.atomic_write(os.path.join(opts.output_dir, "test_results.txt"),
               "\n".join(header) + ner_metrics.format_results(results) + "\n")
  payload = {"test_file": inputs.paths["test"], "checkpoint": checkpoint,
             "sentences": len(sentences), "tokens": num_tokens}
  payload.update(summary)
  payload.update(extra)
  payload["results"] = results
  file_utils.atomic_write(os.path.join(opts.output_dir, "test_results.json"),
               json.dumps(payload, indent=2, default=float) + "\n")
  lines = []
  for sentence, labels in zip(sentences, predicted):
    for token, gold_label, label in zip(sentence.tokens, sentence.labels,
                                        labels):
      lines.append("%s %s %s\n" % (token, gold_label, label))
    lines.append("\n")
  file_utils.atomic_write(os.path.join(opts.output_dir, "test_predictions.txt"),
               "".join(lines))
  logging.info("test: P %.4f R %.4f F1 %.4f (strict F1 %.4f) -> %s",
               summary["conlleval_precision"], summary["conlleval_recall"],
               summary["conlleval_f1"], summary["strict_f1"],
               os.path.join(opts.output_dir, "test_results.txt"))
  return payload


def run(opts):
  """Train / select on dev / test as the flags say. Returns a summary dict."""
  check_options(opts)
  inputs = _Inputs(opts)  # raises on bad input before any output exists
  if not opts.do_train:
    # Fail before writing anything when there is nothing to evaluate.
    if opts.do_eval and not [c for c in run_dir.list_checkpoints(opts.output_dir)
                             if c[0] > 0]:
      raise NerRunError("no fine-tuned checkpoint to evaluate in %s: run "
                        "with --do_train first" % opts.output_dir)
    if opts.do_predict and not opts.do_eval:
      _select_without_dev(opts)
  train_features = inputs.features("train") if opts.do_train else None
  dev_features = inputs.features("dev") if opts.do_eval else None
  test_features = inputs.features("test") if opts.do_predict else None

  tf.io.gfile.makedirs(opts.output_dir)
  run_dir.write_label_map(opts.output_dir, inputs.label_list)
  run_dir.write_run_config(opts.output_dir, run_config(opts, inputs))

  model_fn = ner_model.model_fn_builder(
      albert_config=inputs.albert_config,
      num_labels=len(inputs.label_list),
      init_checkpoint=opts.init_checkpoint,
      learning_rate=opts.learning_rate,
      num_train_steps=opts.train_step,
      num_warmup_steps=opts.warmup_step,
      use_tpu=opts.tpu.use_tpu,
      optimizer=opts.optimizer,
      use_one_hot_embeddings=opts.tpu.use_tpu)
  predict_batch = opts.predict_batch_size or opts.eval_batch_size
  estimator = estimator_utils.make_estimator(
      model_fn, opts.tpu, opts.output_dir, opts.train_batch_size,
      opts.eval_batch_size, predict_batch_size=predict_batch)
  # Dev predictions go through PREDICT mode at the eval batch size.
  dev_estimator = estimator_utils.make_estimator(
      model_fn, opts.tpu, opts.output_dir, opts.train_batch_size,
      opts.eval_batch_size, predict_batch_size=opts.eval_batch_size)

  summary = {"output_dir": opts.output_dir, "data_dir": inputs.data_dir}
  selector = None
  if opts.do_eval:
    dev_file = os.path.join(opts.output_dir, "dev.tf_record")
    write_padded_tfrecord(dev_features, opts.eval_batch_size,
                          opts.max_seq_length, dev_file)
    selector = DevSelector(opts, dev_estimator, inputs.splits["dev"],
                           dev_features, dev_file, inputs.label_list,
                           inputs.paths["dev"])

  if opts.do_train:
    train_file = os.path.join(opts.output_dir, "train.tf_record")
    ner_features.write_tfrecord(train_features, train_file)
    logging.info("training: %d sentences, %d features, %d steps of batch %d",
                 len(inputs.splits["train"]), len(train_features),
                 opts.train_step, opts.train_batch_size)
    summary.update(train(opts, estimator, train_file, len(train_features),
                         selector))
  elif selector is not None:
    selector.evaluate_new()

  if selector is not None:
    if selector.best is None:
      raise NerRunError("no fine-tuned checkpoint to evaluate in %s" %
                        opts.output_dir)
    selector.write(final=True)
    checkpoint = selector.best_checkpoint
    summary["dev"] = selector.best
  elif opts.do_train:
    # No dev selection: the final checkpoint is the one to test and export.
    checkpoint = run_dir.record_best(opts.output_dir, run_dir.list_checkpoints(opts.output_dir)[-1][1])
  elif opts.do_predict:
    checkpoint = _select_without_dev(opts)
  else:
    checkpoint = None

  if opts.do_predict:
    test_file = os.path.join(opts.output_dir, "test.tf_record")
    write_padded_tfrecord(test_features, predict_batch, opts.max_seq_length,
                          test_file)
    started = time.time()
    predicted = predict_sentences(estimator, test_features,
                                  inputs.splits["test"], test_file,
                                  checkpoint, inputs.label_list, "test")
    elapsed = time.time() - started
    extra = {"predict_seconds": round(elapsed, 1),
             "predict_sentences_per_sec": round(
                 len(inputs.splits["test"]) / max(elapsed, 1e-9), 1)}
    extra["step"] = run_dir.checkpoint_step(checkpoint)
    if selector is not None:
      extra["dev_f1"] = selector.best["conlleval_f1"]
    for key in ("train_seconds", "train_steps",
                "train_examples_per_sec_incl_eval"):
      if key in summary:
        extra[key] = summary[key]
    summary["test"] = write_test_outputs(opts, inputs, predicted,
                                         os.path.relpath(checkpoint,
                                                         opts.output_dir),
                                         extra)
  return summary
