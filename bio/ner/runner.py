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

--train_split=train_dev trains on the train and dev sentences together, as
BioBERT's final runs (its train_dev.tsv, else train.tsv then the dev
file): dev can then not choose a checkpoint, so --do_eval is refused and
the last one is tested. Choose --train_step on a train-only run first.

Dev and test words are labelled from the predicted label probabilities by
--decode (bio.ner.decoding: argmax, IOB2-constrained Viterbi, or a learned
CRF's Viterbi); the decoder is recorded in dev_results.json and
test_results.json. --decode=crf also trains with the CRF loss
(bio.ner.crf), so it is a setting of the run (run_config.json).

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
from albert import optimization
from albert import precision
from albert import tokenization
from albert import vocab_record
from bio.ner import crf as ner_crf
from bio.ner import decoding
from bio.ner import iob
from bio.ner import features as ner_features
from bio.ner import metrics as ner_metrics
from bio.ner import model as ner_model
from bio.ner import run_dir
from bio.ner import datasets


class NerRunError(ValueError):
  """A problem with the flags or inputs of a run (reported without a trace)."""


TRAIN_SPLITS = ("train", "train_dev")


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
  training: precision.TrainingOptions = precision.TrainingOptions()
  length_bucketing: bool = True
  decode: str = "argmax"
  train_split: str = "train"

  def length_aware(self):
    """Length-bucketed training and length-sorted, batch-padded dev/test
    prediction: on CPU/GPU unless turned off (TPU keeps fixed shapes)."""
    return self.length_bucketing and not self.tpu.use_tpu


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
  flags.DEFINE_enum(
      "train_split", "train", list(TRAIN_SPLITS),
      "What --do_train trains on: train, or train_dev (the train and dev "
      "sentences: the dataset's train_dev.tsv, else train then dev, as "
      "BioBERT's final runs). train_dev leaves no dev set to select on, so "
      "it excludes --do_eval and the last checkpoint is tested: choose "
      "--train_step on a train run first.", **kw)
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
  common_flags.define_seed_flag(
      "the TF graph (classifier initialisation, dropout) and of the "
      "training-data shuffle", **kw)
  common_flags.define_tpu_flags(iterations_per_loop=200,
                                save_checkpoints_steps=200,
                                keep_checkpoint_max=5, **kw)
  common_flags.define_training_flags(**kw)
  flags.DEFINE_bool(
      "length_bucketing", True,
      "CPU/GPU: batch training windows of similar length padded to their "
      "longest, and pad dev/test batches to their longest window (sorted "
      "by length), instead of padding all to --max_seq_length. Same "
      "examples, loss per label and predictions; ignored on TPU.", **kw)
  flags.DEFINE_enum(
      "decode", "argmax", list(decoding.DECODERS),
      "Word labels from the label probabilities: argmax (each word's most "
      "probable label, as the paper), viterbi (the most probable label "
      "sequence valid in IOB2; bio.ner.decoding) or crf (train a linear-"
      "chain CRF head, bio.ner.crf, and decode by its learned scores within "
      "IOB2). Used for dev selection and test predictions; training is the "
      "same for argmax and viterbi.", **kw)


def options_from_flags(flag_values):
  """A `NerOptions` from parsed flags (those of `define_flags`)."""
  fields = {f.name for f in dataclasses.fields(NerOptions)}
  fields -= {"tokenizer", "tpu", "training"}
  return NerOptions(
      tokenizer=common_flags.TokenizerOptions.from_flags(flag_values),
      tpu=estimator_utils.TpuOptions.from_flags(flag_values),
      training=precision.TrainingOptions.from_flags(flag_values),
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


class RunInputs(object):
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
    self.train_files = [self.paths.get(opts.train_split)]
    if opts.train_split == "train_dev" and "train_dev" not in self.splits:
      # What BioBERT's train_dev.tsv files hold: train, then dev.
      self.splits["train_dev"] = self.splits["train"] + self.splits["dev"]
      self.train_files = [self.paths["train"], self.paths["dev"]]

    train_labels = iob.get_label_list(self.splits[opts.train_split])
    self.label_list = (None if opts.overwrite else
                       run_dir.read_label_list(opts.output_dir))
    if self.label_list is None:
      self.label_list = train_labels
    elif opts.do_train and self.label_list != train_labels:
      raise NerRunError(
          "%s holds labels %s but the training data %s has %s: use a fresh "
          "--output_dir for a different dataset" %
          (os.path.join(opts.output_dir, run_dir.LABEL_MAP_FILE),
           self.label_list, self.train_source(), train_labels))
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

  def train_source(self, path=lambda p: p):
    """The training file(s) as one string ("train.tsv + devel.tsv")."""
    return " + ".join(path(p) for p in self.train_files)

  def features(self, split):
    return ner_features.convert_sentences(
        self.splits[split], self.label_map, self.opts.max_seq_length,
        self.encoder, allow_unknown_labels=(split != self.opts.train_split),
        name=split)


def _abs(path):
  """Absolute local paths (a run dir may be used from elsewhere); URLs kept."""
  if not path or "://" in path:
    return path
  return os.path.abspath(path)


def run_settings(opts, inputs, init_checkpoint):
  """The settings that define a run: a run directory holds one run, so a
  later run there must match them (checked against run_config.json)."""
  return {
      "albert_config_file": _abs(opts.albert_config_file),
      # The contents too: a config edited in place must not resume a run.
      "albert_config": inputs.albert_config.to_dict(),
      "spm_model_file": _abs(opts.tokenizer.spm_model_file),
      "vocab_file": _abs(opts.tokenizer.vocab_file),
      "do_lower_case": opts.tokenizer.do_lower_case,
      "max_seq_length": opts.max_seq_length,
      "collapse_types": opts.collapse_types,
      "dataset": opts.dataset,
      "data_dir": _abs(inputs.data_dir),
      "train_file": inputs.train_source(_abs),
      "train_split": opts.train_split,
      "init_checkpoint": _abs(init_checkpoint),
      "learning_rate": opts.learning_rate,
      "train_step": opts.train_step,
      "warmup_step": opts.warmup_step,
      "train_batch_size": opts.train_batch_size,
      "optimizer": opts.optimizer,
      "seed": opts.seed,
      "crf": opts.decode == "crf",
  }


# Without --do_train a run only reads the model: its data and training
# settings may differ (e.g. tagging another corpus with a trained model).
_MODEL_SETTINGS = ("albert_config_file", "albert_config", "spm_model_file",
                   "vocab_file", "do_lower_case", "max_seq_length",
                   "collapse_types")


def run_config(opts, inputs, init_checkpoint):
  """The settings recorded in run_config.json: what export needs at the top
  level, and the settings that define the run under SETTINGS_KEY."""
  settings = run_settings(opts, inputs, init_checkpoint)
  config = {key: settings[key] for key in (
      "albert_config_file", "spm_model_file", "vocab_file", "do_lower_case",
      "max_seq_length", "collapse_types", "data_dir", "dataset",
      "init_checkpoint")}
  config["window_stride"] = None  # None: half a window (bio.ner.features)
  config["label_list"] = inputs.label_list
  config[run_dir.SETTINGS_KEY] = settings
  return config


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
  if opts.training.distribution == "multi_worker":
    # Dev-set selection trains in several Estimator calls; a cluster's
    # workers can run only one (estimator_utils.train).
    raise NerRunError(
        "--distribution=multi_worker is for run_pretraining.py; fine-tune "
        "on one machine (--distribution=mirrored uses all its GPUs)")
  try:
    precision.validate(opts.training, opts.tpu.use_tpu,
                       train_batch_size=opts.train_batch_size)
  except precision.TrainingSetupError as e:
    raise NerRunError(str(e)) from e
  if opts.train_batch_size % opts.training.gradient_accumulation_steps:
    raise NerRunError("--train_batch_size must be a multiple of "
                      "--gradient_accumulation_steps")
  if opts.overwrite and not opts.do_train:
    raise NerRunError("--overwrite starts a run afresh: it needs --do_train")
  if opts.train_split == "train_dev" and opts.do_eval:
    raise NerRunError(
        "--train_split=train_dev trains on the dev sentences, so dev cannot "
        "choose a checkpoint: drop --do_eval (the last checkpoint is "
        "tested), with a --train_step chosen on dev by a --train_split=train "
        "run")


def _encoder_shapes(albert_config):
  """{name: shape} of the encoder variables `albert_config` defines."""
  with tf.Graph().as_default():
    modeling.AlbertModel(albert_config, False,
                         tf.zeros([1, 2], dtype=tf.int32))
    return {v.op.name: v.shape.as_list() for v in tf.global_variables()
            if v.op.name.startswith(ner_model.ENCODER_SCOPE + "/")}


def check_init_checkpoint(opts, albert_config):
  """The --init_checkpoint prefix (None without one); raises NerRunError
  when it is missing or its encoder does not fit --albert_config_file."""
  if not opts.init_checkpoint:
    return None
  prefix = file_utils.resolve_checkpoint(opts.init_checkpoint,
                                         "--init_checkpoint", NerRunError)
  expected = _encoder_shapes(albert_config)
  problems = file_utils.checkpoint_shape_problems(prefix, expected)
  # Missing variables are fine (fine-tuning starts them afresh), unless all
  # are missing.
  mismatched = [p for p in problems if p[1] is not None]
  if mismatched:
    name, found_shape, shape = mismatched[0]
    raise NerRunError(
        "--init_checkpoint %s: variable %s has shape %s there but %s in "
        "--albert_config_file %s: give the config of that model" %
        (prefix, name, found_shape, shape, opts.albert_config_file))
  if len(problems) == len(expected):
    raise NerRunError(
        "--init_checkpoint %s holds no %s/ (encoder) variable: give an "
        "ALBERT encoder or pretraining checkpoint" %
        (prefix, ner_model.ENCODER_SCOPE))
  vocab_record.check(prefix, opts.tokenizer.spm_model_file, NerRunError)
  return prefix


def _has_fine_tuned(output_dir):
  return any(step > 0 for step, _ in run_dir.list_checkpoints(output_dir))


def check_run_dir(opts, inputs, init_checkpoint):
  """Raises NerRunError when --output_dir holds another run (unless
  --overwrite) or, without --do_train, nothing to evaluate or test."""
  if opts.overwrite:
    return
  settings = run_settings(opts, inputs, init_checkpoint)
  if not opts.do_train:
    settings = {k: settings[k] for k in _MODEL_SETTINGS}
  differ = run_dir.differing_settings(opts.output_dir, settings)
  if differ:
    raise NerRunError(
        "%s holds a run with other settings (%s): use another --output_dir, "
        "or --overwrite to start afresh" % (opts.output_dir, "; ".join(
            "%s: %r there, %r now" % d for d in differ)))
  if opts.do_eval:
    _check_dev_decode(opts)
  if not opts.do_train:
    # Fail before writing anything when there is nothing to evaluate.
    trained = run_dir.list_checkpoints(opts.output_dir)
    if trained:
      crf_params(trained[-1][1], opts.decode)
    if opts.do_eval and not _has_fine_tuned(opts.output_dir):
      raise NerRunError("no fine-tuned checkpoint to evaluate in %s: run "
                        "with --do_train first" % opts.output_dir)
    if opts.do_predict and not opts.do_eval:
      chosen_checkpoint(opts.output_dir)


def _check_dev_decode(opts):
  """Dev results decoded otherwise must not be mixed with this run's."""
  payload = run_dir.read_dev_results(opts.output_dir) or {}
  recorded = run_dir.results_decode(payload)
  if payload.get("records") and recorded != opts.decode:
    raise NerRunError(
        "the dev results in %s were decoded with --decode=%s, not %s: use "
        "--decode=%s there, another --output_dir, or --do_predict without "
        "--do_eval to test the chosen checkpoint with --decode=%s" % (
            os.path.join(opts.output_dir, run_dir.DEV_RESULTS_FILE), recorded,
            opts.decode, recorded, opts.decode))


# ---------------------------------------------------------------------------
# Prediction and dev selection


def predict_word_probs(estimator, features, sentences, input_file, checkpoint,
                       name, order=None):
  """Each sentence's label probabilities per word ([words, labels] rows)
  predicted with `checkpoint`.

  `order` (from `write_padded_tfrecord`): the file holds the features in
  this order, length-sorted, and each batch is padded to its longest one.
  """
  input_fn = ner_features.file_based_input_fn_builder(
      input_file, len(features[0].input_ids), is_training=False,
      drop_remainder=True, trim_to_batch=order is not None)
  in_file = features if order is None else [features[i] for i in order]
  started = time.time()
  predicted = []
  log_every = 2000
  for i, result in enumerate(estimator.predict(
      input_fn, predict_keys=["probabilities"], checkpoint_path=checkpoint)):
    if i < len(features):
      predicted.append(result["probabilities"])
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
  return ner_features.assemble_word_values(
      in_file, predicted, [len(s.tokens) for s in sentences])


def predict_sentences(estimator, features, sentences, input_file, checkpoint,
                      id_to_label, name, order=None, decode="argmax"):
  """Word-level predicted labels of `sentences` with `checkpoint`, decoded
  from the label probabilities by `decode` (bio.ner.decoding)."""
  params = crf_params(checkpoint, decode)
  word_probs = predict_word_probs(estimator, features, sentences, input_file,
                                  checkpoint, name, order)
  return decoding.decode(word_probs, id_to_label, decode, crf=params)


def crf_params(checkpoint, decode):
  """The CRF's parameters in `checkpoint` for decode "crf", else None;
  raises NerRunError when a CRF decode meets a model without them."""
  if decode != "crf":
    return None
  return ner_crf.require_params(
      checkpoint, ner_model.CLASSIFIER_SCOPE, NerRunError,
      "decode it with argmax or viterbi, or fine-tune with --decode=crf in "
      "another --output_dir")


def write_padded_tfrecord(features, batch_size, max_seq_length, path,
                          sort=False):
  """Writes the features padded to a batch multiple; returns the order of
  the features in the file (longest first) with `sort`, else None."""
  order = ner_features.length_order(features) if sort else None
  if order is not None:
    features = [features[i] for i in order]
  padded = ner_features.pad_to_batch_multiple(features, batch_size,
                                              max_seq_length)
  ner_features.write_tfrecord(padded, path)
  return order


class DevSelector(object):
  """Evaluates checkpoints on dev as they appear and keeps the best.

  A resumed run continues from the records of dev_results.json (and the
  best/ copy they chose), so it neither re-evaluates nor forgets them.
  """

  def __init__(self, opts, estimator, sentences, features, input_file,
               label_list, dev_path, order=None):
    self.opts = opts
    self.estimator = estimator
    self.sentences = sentences
    self.features = features
    self.input_file = input_file
    self.label_list = label_list
    self.dev_path = dev_path
    self.order = order
    self.records = []  # dicts: step, checkpoint, metrics...
    self.best = None
    self.best_checkpoint = None
    self._reload()

  def _reload(self):
    """Takes over the records of an earlier (interrupted) run."""
    payload = run_dir.read_dev_results(self.opts.output_dir)
    if not payload or not payload.get("records"):
      return
    best = run_dir.read_best_checkpoint(self.opts.output_dir)
    chosen = payload.get("chosen") or {}
    if not best or not tf.io.gfile.exists(best + ".index"):
      logging.warning("%s: the best checkpoint of the earlier dev results is "
                      "gone; evaluating afresh", self.opts.output_dir)
      return
    self.records = list(payload["records"])
    for record in self.records:
      if record["step"] == chosen.get("step"):
        self.best = record
    self.best_checkpoint = best if self.best else None
    logging.info("resuming: %d dev results reloaded, best so far step %s",
                 len(self.records), chosen.get("step"))

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
                                  self.label_list, "dev", self.order,
                                  self.opts.decode)
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
        "# Selection: entity-level F1, seqeval conlleval-compatible mode; "
        "labels decoded by %s." % self.opts.decode,
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
    file_utils.atomic_write(
        os.path.join(self.opts.output_dir, "dev_results.txt"),
        "\n".join(lines) + "\n")
    best = (run_dir.BEST_DIR + "/" + self.best["checkpoint"] if self.best
            else None)
    file_utils.atomic_write(
        os.path.join(self.opts.output_dir, run_dir.DEV_RESULTS_FILE),
        json.dumps({"dev_file": self.dev_path, "decode": self.opts.decode,
                    "records": self.records,
                    "chosen": self.best, "best_checkpoint": best,
                    "final": final}, indent=2) + "\n")


# ---------------------------------------------------------------------------
# The run


class _DevListener(tf.estimator.CheckpointSaverListener):
  """Evaluates each checkpoint on dev right after it is saved, before a
  later save can rotate it away (training itself runs once)."""

  def __init__(self, selector):
    self._selector = selector

  def after_save(self, session, global_step_value):
    del session, global_step_value  # the selector finds the new checkpoint
    self._selector.evaluate_new()


def _train_steps(opts, estimator, input_fn, hooks, selector):
  """Runs training to --train_step, dev-evaluating every checkpoint."""
  if selector is None:
    estimator.train(input_fn, max_steps=opts.train_step, hooks=hooks)
    return
  selector.evaluate_new()  # checkpoints an interrupted run left unevaluated
  if not opts.tpu.use_tpu:
    estimator.train(input_fn, max_steps=opts.train_step, hooks=hooks,
                    saving_listeners=[_DevListener(selector)])
  else:
    # The TPU is busy while training: evaluate between chunks instead.
    every = opts.tpu.save_checkpoints_steps
    for target in list(range(every, opts.train_step, every)) + [
        opts.train_step]:
      estimator.train(input_fn, max_steps=target, hooks=hooks)
      selector.evaluate_new()
  selector.evaluate_new()


def train(opts, estimator, train_file, num_examples, selector=None):
  """Trains to --train_step; with a selector, evaluates each new checkpoint."""
  boundaries = None
  if opts.length_aware():
    boundaries = ner_features.default_bucket_boundaries(opts.max_seq_length)
  input_fn = ner_features.file_based_input_fn_builder(
      train_file, opts.max_seq_length, is_training=True, drop_remainder=True,
      shuffle_buffer=num_examples, seed=opts.seed,
      bucket_boundaries=boundaries)
  every = max(1, min(100, opts.tpu.save_checkpoints_steps // 2))
  started = time.time()
  existing = run_dir.list_checkpoints(opts.output_dir)
  first_step = existing[-1][0] if existing else 0
  hook = estimator_utils.ThroughputHook(opts.train_batch_size,
                                        opts.train_step, every)
  _train_steps(opts, estimator, input_fn, [hook], selector)
  elapsed = time.time() - started
  steps = max(opts.train_step - first_step, 0)
  timing = {"train_seconds": round(elapsed, 1), "train_steps": steps}
  if steps:
    timing["train_examples_per_sec_incl_eval"] = round(
        steps * opts.train_batch_size / max(elapsed, 1e-9), 1)
  logging.info("training to step %d done in %s", opts.train_step,
               estimator_utils.format_seconds(elapsed))
  return timing


def chosen_checkpoint(output_dir):
  """The checkpoint a run directory's model is tested with when this call
  does no dev selection: the recorded choice, else the last fine-tuned."""
  best = run_dir.read_best_checkpoint(output_dir)
  if best and tf.io.gfile.exists(best + ".index"):
    return best
  found = [c for c in run_dir.list_checkpoints(output_dir) if c[0] > 0]
  if not found:
    raise NerRunError("no fine-tuned checkpoint in %s: run with --do_train "
                      "first" % output_dir)
  return found[-1][1]


def write_test_outputs(opts, inputs, predicted, checkpoint, extra):
  """test_results.txt/.json and test_predictions.txt of a run, each
  atomically."""
  # The model may come from an earlier run_ner.py call: its record says
  # what it was trained on.
  trained = run_dir.read_run_config(opts.output_dir).get(
      run_dir.SETTINGS_KEY) or {}
  train_split = trained.get("train_split", "train")
  described = [
      "trained on: %s (%s)" % (train_split, trained.get("train_file")),
      "checkpoint: %s" % checkpoint,
      "decode: %s" % opts.decode,
  ]
  extra = dict(extra, checkpoint=checkpoint, train_split=train_split)
  return write_test_files(opts.output_dir, inputs.paths["test"],
                          inputs.splits["test"], predicted, described, extra)


def write_test_files(output_dir, test_path, sentences, predicted, described,
                     extra):
  """Scores `predicted` (labels per sentence) against the gold labels of
  `sentences` and writes test_results.txt (`described`: lines saying what
  predicted them), test_results.json (with `extra`) and
  test_predictions.txt ("token gold predicted" lines), each atomically.
  Returns the test_results.json payload."""
  gold = [s.labels for s in sentences]
  results = ner_metrics.evaluate(gold, predicted)
  summary = summarize(results)
  num_tokens = sum(len(s.tokens) for s in sentences)
  header = [
      "# BioALBERT NER test results",
      "test file: %s" % test_path,
  ] + list(described) + [
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
  file_utils.atomic_write(
      os.path.join(output_dir, "test_results.txt"),
      "\n".join(header) + ner_metrics.format_results(results) + "\n")
  payload = {"test_file": test_path, "sentences": len(sentences),
             "tokens": num_tokens}
  payload.update(summary)
  payload.update(extra)
  payload["results"] = results
  file_utils.atomic_write(
      os.path.join(output_dir, "test_results.json"),
      json.dumps(payload, indent=2, default=float) + "\n")
  lines = []
  for sentence, labels in zip(sentences, predicted):
    for token, gold_label, label in zip(sentence.tokens, sentence.labels,
                                        labels):
      lines.append("%s %s %s\n" % (token, gold_label, label))
    lines.append("\n")
  file_utils.atomic_write(
      os.path.join(output_dir, "test_predictions.txt"), "".join(lines))
  logging.info("test: P %.4f R %.4f F1 %.4f (strict F1 %.4f) -> %s",
               summary["conlleval_precision"], summary["conlleval_recall"],
               summary["conlleval_f1"], summary["strict_f1"],
               os.path.join(output_dir, "test_results.txt"))
  return payload


def run(opts):
  """Train / select on dev / test as the flags say. Returns a summary dict.

  Every input (flags, data, tokenizer, config, --init_checkpoint, the
  state of --output_dir) is checked before anything is written; the run
  then holds the directory's lock (`file_utils.DirLock`).
  """
  check_options(opts)
  try:
    precision.configure_cpu_replicas(opts.training)
  except precision.TrainingSetupError as e:
    raise NerRunError(str(e)) from e
  inputs = RunInputs(opts)
  init_checkpoint = check_init_checkpoint(opts, inputs.albert_config)
  check_run_dir(opts, inputs, init_checkpoint)
  features = {split: inputs.features(split) for split, wanted in (
      (opts.train_split, opts.do_train), ("dev", opts.do_eval),
      ("test", opts.do_predict)) if wanted}
  with file_utils.DirLock(opts.output_dir, warn=logging.warning):
    _start_run_dir(opts, inputs, init_checkpoint)
    return _run_locked(opts, inputs, init_checkpoint, features)


def _start_run_dir(opts, inputs, init_checkpoint):
  """Clears an earlier run (--overwrite) and records this one."""
  if opts.overwrite:
    removed = run_dir.clear(opts.output_dir)
    if removed:
      logging.warning("--overwrite: removed %d files of an earlier run in %s",
                      len(removed), opts.output_dir)
  run_dir.write_label_map(opts.output_dir, inputs.label_list)
  if opts.tokenizer.spm_model_file:
    # Beside the training checkpoints and the selected copy in best/.
    for directory in (opts.output_dir,
                      os.path.join(opts.output_dir, run_dir.BEST_DIR)):
      tf.io.gfile.makedirs(directory)
      vocab_record.write(directory, opts.tokenizer.spm_model_file)
  if opts.do_train or not run_dir.read_run_config(opts.output_dir):
    run_dir.write_run_config(opts.output_dir,
                             run_config(opts, inputs, init_checkpoint))


def _model_fn(opts, inputs, init_checkpoint, plan):
  micro_batches = opts.training.gradient_accumulation_steps
  return ner_model.model_fn_builder(
      albert_config=inputs.albert_config,
      num_labels=len(inputs.label_list),
      init_checkpoint=init_checkpoint,
      learning_rate=opts.learning_rate,
      num_train_steps=opts.train_step,
      num_warmup_steps=opts.warmup_step,
      use_tpu=opts.tpu.use_tpu,
      optimizer=opts.optimizer,
      use_one_hot_embeddings=opts.tpu.use_tpu,
      seed=opts.seed,
      compute_dtype=plan.compute_dtype,
      train_options=optimization.TrainOptions(
          gradient_accumulation_steps=micro_batches,
          loss_scale=plan.loss_scale),
      crf=opts.decode == "crf")


def _estimators(opts, inputs, init_checkpoint):
  """(estimator for training, for test and for dev predictions)."""
  plan = precision.plan(opts.training, opts.tpu.use_tpu)
  model_fn = _model_fn(opts, inputs, init_checkpoint, plan)
  config = precision.session_config(plan)
  batch = opts.train_batch_size // opts.training.gradient_accumulation_steps
  estimator = estimator_utils.make_estimator(
      model_fn, opts.tpu, opts.output_dir, batch, opts.eval_batch_size,
      predict_batch_size=_predict_batch(opts), session_config=config)
  train_estimator = estimator
  strategy = precision.make_strategy(plan)
  if strategy is not None:
    train_estimator = estimator_utils.make_estimator(
        model_fn, opts.tpu, opts.output_dir, batch, opts.eval_batch_size,
        session_config=config, strategy=strategy)
  # Dev predictions go through PREDICT mode at the eval batch size.
  dev_estimator = estimator_utils.make_estimator(
      model_fn, opts.tpu, opts.output_dir, batch, opts.eval_batch_size,
      predict_batch_size=opts.eval_batch_size, session_config=config)
  return train_estimator, estimator, dev_estimator


def predict_estimator(opts, inputs):
  """An estimator that predicts with the checkpoints of opts.output_dir
  (it writes nothing there)."""
  plan = precision.plan(opts.training, opts.tpu.use_tpu)
  return estimator_utils.make_estimator(
      _model_fn(opts, inputs, None, plan), opts.tpu, opts.output_dir,
      opts.train_batch_size, opts.eval_batch_size,
      predict_batch_size=_predict_batch(opts),
      session_config=precision.session_config(plan))


def _predict_batch(opts):
  return opts.predict_batch_size or opts.eval_batch_size


def _make_selector(opts, inputs, dev_features, dev_estimator):
  dev_file = os.path.join(opts.output_dir, "dev.tf_record")
  order = write_padded_tfrecord(dev_features, opts.eval_batch_size,
                                opts.max_seq_length, dev_file,
                                sort=opts.length_aware())
  return DevSelector(opts, dev_estimator, inputs.splits["dev"],
                     dev_features, dev_file, inputs.label_list,
                     inputs.paths["dev"], order)


def _run_locked(opts, inputs, init_checkpoint, features):
  """The run proper, once inputs are checked and the directory is ours."""
  train_estimator, estimator, dev_estimator = _estimators(
      opts, inputs, init_checkpoint)
  summary = {"output_dir": opts.output_dir, "data_dir": inputs.data_dir}
  selector = None
  if opts.do_eval:
    selector = _make_selector(opts, inputs, features["dev"], dev_estimator)
  if opts.do_train:
    train_file = os.path.join(opts.output_dir, "train.tf_record")
    train_features = features[opts.train_split]
    ner_features.write_tfrecord(train_features, train_file)
    logging.info("training on %s: %d sentences, %d features, %d steps of "
                 "batch %d", inputs.train_source(),
                 len(inputs.splits[opts.train_split]), len(train_features),
                 opts.train_step, opts.train_batch_size)
    summary.update(train(opts, train_estimator, train_file,
                         len(train_features), selector))
  elif selector is not None:
    selector.evaluate_new()
  checkpoint = _choose_checkpoint(opts, selector, summary)
  if opts.do_predict:
    summary["test"] = _test(opts, inputs, features["test"], estimator,
                            checkpoint, summary)
  return summary


def _choose_checkpoint(opts, selector, summary):
  """The checkpoint to test: dev's best, else the last one trained."""
  if selector is not None:
    if selector.best is None:
      raise NerRunError("no fine-tuned checkpoint to evaluate in %s" %
                        opts.output_dir)
    selector.write(final=True)
    summary["dev"] = selector.best
    return selector.best_checkpoint
  if opts.do_train:
    # No dev selection: the final checkpoint is the one to test and export.
    last = run_dir.list_checkpoints(opts.output_dir)[-1][1]
    return run_dir.record_best(opts.output_dir, last)
  if opts.do_predict:
    return chosen_checkpoint(opts.output_dir)
  return None


def _test(opts, inputs, test_features, estimator, checkpoint, summary):
  """Tags the test split with `checkpoint`; writes the test outputs."""
  test_file = os.path.join(opts.output_dir, "test.tf_record")
  order = write_padded_tfrecord(test_features, _predict_batch(opts),
                                opts.max_seq_length, test_file,
                                sort=opts.length_aware())
  started = time.time()
  predicted = predict_sentences(estimator, test_features,
                                inputs.splits["test"], test_file,
                                checkpoint, inputs.label_list, "test", order,
                                opts.decode)
  elapsed = time.time() - started
  extra = {"predict_seconds": round(elapsed, 1),
           "predict_sentences_per_sec": round(
               len(inputs.splits["test"]) / max(elapsed, 1e-9), 1)}
  extra["step"] = run_dir.checkpoint_step(checkpoint)
  extra["decode"] = opts.decode
  if "dev" in summary:
    extra["dev_f1"] = summary["dev"]["conlleval_f1"]
  for key in ("train_seconds", "train_steps",
              "train_examples_per_sec_incl_eval"):
    if key in summary:
      extra[key] = summary[key]
  return write_test_outputs(opts, inputs, predicted,
                            os.path.relpath(checkpoint, opts.output_dir),
                            extra)
