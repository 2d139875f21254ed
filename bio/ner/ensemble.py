r"""Tags a test set with several fine-tuned NER models together.

  python -m bio.ner.ensemble --run_dirs=ncbi-s1,ncbi-s2 --output_dir=ncbi-ens
  (or bioalbert-ensemble-ner ...)

Each member is a `run_ner.py` output directory. Its model (the checkpoint
the run tested: best_checkpoint.txt, else the last one), tokenizer, config
and window settings come from its run_config.json, so members may differ in
all of them; they must share the label set. The test set is --dataset /
--data_dir (resolved as in run_ner.py), by default the first member's.

How the members are combined, per word: the geometric mean of their label
probabilities (the mean of their log-probabilities, renormalised); with
--decode=crf also the mean of their CRF start, transition and end scores.
The decoders are those of bio.ner.decoding on the combined values. For crf
and viterbi that is exactly the label sequence of best mean score over the
members (a per-word constant shifts every sequence alike). --decode
defaults to crf when every member has a CRF head, else viterbi.

Outputs in --output_dir (each written atomically; the directory is locked
while the command runs; a re-run with the same members recomputes, with
other members it is refused):
  ensemble.json          the members (directory, checkpoint, each one's own
                         test scores), the decoder, the test file
  test_results.txt/.json the ensemble's scores, as run_ner.py writes them
  test_predictions.txt   "token gold predicted" lines, as run_ner.py's
Nothing is written in the members' directories. `python -m
bio.serving.export --model_dir=OUTPUT_DIR` exports the ensemble as one
SavedModel (same combination, in the graph) for bio.serving.tag.

Measured (README section 9): nine CRF fits of one pretrained encoder on
NCBI-disease (seeds 1-9) score 76.2-77.5 test F1 alone; their 36 pairs
score 76.9-78.5 (mean 77.6), and all nine 78.4.
"""
import dataclasses
import os
import shutil
import sys
import time
from typing import Optional, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np

from albert import common_flags
from albert import file_utils
from albert import precision
from bio.ner import crf as ner_crf
from bio.ner import decoding
from bio.ner import metrics as ner_metrics
from bio.ner import model as ner_model
from bio.ner import run_dir
from bio.ner import runner

ENSEMBLE_FILE = run_dir.ENSEMBLE_FILE


class EnsembleError(ValueError):
  """A problem with the flags or the members (one line, no trace)."""


USER_ERRORS = runner.USER_ERRORS + (EnsembleError,)


@dataclasses.dataclass(frozen=True)
class EnsembleOptions:
  """The flags of `python -m bio.ner.ensemble`."""
  run_dirs: Tuple[str, ...] = ()
  output_dir: Optional[str] = None
  data_dir: Optional[str] = None
  dataset: Optional[str] = None
  decode: Optional[str] = None  # None: crf if every member has one
  predict_batch_size: int = 64
  precision: str = "fp32"


def geometric_mean(member_probs):
  """[words, L] label distributions of one sentence from each member's
  [words, L] ones: exp(mean log p), renormalised per word."""
  logs = np.mean([decoding.floored_log(p) for p in member_probs], axis=0)
  logs -= logs.max(axis=-1, keepdims=True)
  probs = np.exp(logs)
  return probs / probs.sum(axis=-1, keepdims=True)


class _Member(object):
  """One run directory: its options, inputs, checkpoint and CRF."""

  def __init__(self, path, opts, data):
    self.path = path
    config = _run_config(path)
    owner = file_utils.lock_holder(path)
    if owner:
      raise EnsembleError("%s is still in use (pid %d on %s): wait for its "
                          "run to finish" % (path, owner[1], owner[0]))
    settings = config.get(run_dir.SETTINGS_KEY) or {}
    dataset, data_dir = data
    self.opts = runner.NerOptions(
        output_dir=path, data_dir=data_dir, dataset=dataset,
        collapse_types=config.get("collapse_types", False),
        albert_config_file=config.get("albert_config_file"),
        tokenizer=common_flags.TokenizerOptions(
            spm_model_file=config.get("spm_model_file"),
            vocab_file=config.get("vocab_file"),
            do_lower_case=config.get("do_lower_case", True)),
        do_predict=True, max_seq_length=config["max_seq_length"],
        eval_batch_size=opts.predict_batch_size,
        predict_batch_size=opts.predict_batch_size,
        decode="crf" if settings.get("crf") else "argmax",
        training=precision.TrainingOptions(precision=opts.precision))
    self.inputs = runner.RunInputs(self.opts)
    self.checkpoint = runner.chosen_checkpoint(path)
    self.crf = ner_crf.load_params(self.checkpoint,
                                   ner_model.CLASSIFIER_SCOPE)

  @property
  def label_list(self):
    return self.inputs.label_list

  def sentences(self):
    return self.inputs.splits["test"]

  def columns(self, label_list):
    """Indices of `label_list`'s labels in this member's label order."""
    return [self.label_list.index(label) for label in label_list]

  def crf_in(self, label_list):
    """The member's CRF scores indexed in `label_list`'s order (or None)."""
    if self.crf is None:
      return None
    return ner_crf.reorder_params(self.crf, self.columns(label_list))

  def word_probs(self, work_dir, index, label_list):
    """Each test sentence's [words, L] probabilities, columns in
    `label_list`'s order."""
    features = self.inputs.features("test")
    record = os.path.join(work_dir, "member-%d.test.tf_record" % index)
    order = runner.write_padded_tfrecord(
        features, self.opts.predict_batch_size, self.opts.max_seq_length,
        record, sort=self.opts.length_aware())
    estimator = runner.predict_estimator(self.opts, self.inputs)
    probs = runner.predict_word_probs(
        estimator, features, self.sentences(), record, self.checkpoint,
        "member %d" % (index + 1), order)
    columns = self.columns(label_list)
    return [np.asarray(p).reshape([-1, len(self.label_list)])[:, columns]
            for p in probs]


def _run_config(path):
  config = run_dir.read_run_config(path)
  if not config:
    raise EnsembleError("%s has no %s: give run_ner.py output directories "
                        "in --run_dirs" % (path, run_dir.RUN_CONFIG_FILE))
  missing = [key for key in ("albert_config_file", "max_seq_length")
             if not config.get(key)]
  if missing:
    raise EnsembleError("%s lacks %s: is it a run_ner.py run directory?" % (
        os.path.join(path, run_dir.RUN_CONFIG_FILE), ", ".join(missing)))
  return config


def _test_data(opts):
  """(dataset, data_dir) of the test set: the flags', else the first
  member's."""
  if opts.dataset or opts.data_dir:
    return opts.dataset, opts.data_dir
  config = _run_config(opts.run_dirs[0])
  return config.get("dataset"), config.get("data_dir")


def _check_options(opts):
  if len(opts.run_dirs) < 2:
    raise EnsembleError("--run_dirs needs at least two run_ner.py output "
                        "directories, separated by commas")
  if len(set(map(os.path.abspath, opts.run_dirs))) < len(opts.run_dirs):
    raise EnsembleError("--run_dirs names a directory twice")
  if not opts.output_dir:
    raise EnsembleError("--output_dir is required")
  if opts.decode is not None:
    try:
      decoding.check_decoder(opts.decode)
    except ValueError as e:
      raise EnsembleError(str(e)) from e
  if opts.predict_batch_size < 1:
    raise EnsembleError("--predict_batch_size must be positive")
  out = os.path.abspath(opts.output_dir)
  for member in opts.run_dirs:
    if out == os.path.abspath(member):
      raise EnsembleError("--output_dir %s is one of the members: give the "
                          "ensemble a directory of its own" % opts.output_dir)
  if run_dir.read_run_config(opts.output_dir):
    raise EnsembleError("--output_dir %s holds a run_ner.py run: give the "
                        "ensemble a directory of its own" % opts.output_dir)


def _decoder(opts, members):
  """The decoder to use; a crf one needs a CRF in every member."""
  without = [m.path for m in members if m.crf is None]
  if opts.decode is None:
    return "viterbi" if without else "crf"
  if opts.decode == "crf" and without:
    raise EnsembleError(
        "--decode=crf needs members fine-tuned with --decode=crf, but %s has "
        "no CRF: use --decode=viterbi" % without[0])
  return opts.decode


def _check_members(members):
  first = members[0]
  for member in members[1:]:
    if sorted(member.label_list) != sorted(first.label_list):
      raise EnsembleError(
          "%s has labels %s but %s has %s: members must share their labels"
          % (member.path, member.label_list, first.path, first.label_list))


def _settings(opts, members, decode):
  """What defines this ensemble's results (compared on a re-run)."""
  return {
      "members": [{"run_dir": os.path.abspath(m.path),
                   "checkpoint": os.path.abspath(m.checkpoint)}
                  for m in members],
      "test_file": os.path.abspath(members[0].inputs.paths["test"]),
      "decode": decode,
      "precision": opts.precision,
  }


def _identity(key, value):
  """A setting as compared on a re-run: members by directory and
  checkpoint (ensemble.json adds their scores)."""
  if key == "members" and value is not None:
    return [(m.get("run_dir"), m.get("checkpoint")) for m in value]
  return value


def _check_output_dir(opts, settings):
  """Refuses an --output_dir holding an ensemble of other members."""
  earlier = run_dir.read_ensemble(opts.output_dir)
  if earlier is None:
    return
  path = os.path.join(opts.output_dir, ENSEMBLE_FILE)
  differ = [key for key in settings
            if _identity(key, earlier.get(key)) != _identity(key,
                                                             settings[key])]
  if differ:
    raise EnsembleError(
        "%s holds an ensemble with other %s (%s): use another --output_dir" %
        (opts.output_dir, " and ".join(differ), path))


def run(opts):
  """Checks every input, then predicts with each member and writes the
  ensemble's results. Returns the test_results.json payload."""
  _check_options(opts)
  data = _test_data(opts)
  members = [_Member(path, opts, data) for path in opts.run_dirs]
  _check_members(members)
  decode = _decoder(opts, members)
  settings = _settings(opts, members, decode)
  _check_output_dir(opts, settings)
  label_list = members[0].label_list
  sentences = members[0].sentences()
  with file_utils.DirLock(opts.output_dir, warn=logging.warning):
    # The members' test records are scratch: kept out of --output_dir.
    work_dir = file_utils.scratch_dir("bioalbert-ensemble-")
    try:
      started = time.time()
      probs = []
      for index, member in enumerate(members):
        logging.info("member %d/%d: %s (%s)", index + 1, len(members),
                     member.path, os.path.basename(member.checkpoint))
        probs.append(member.word_probs(work_dir, index, label_list))
    finally:
      shutil.rmtree(work_dir, ignore_errors=True)
    return _write(opts, members, settings, label_list, sentences, probs,
                  time.time() - started)


def _write(opts, members, settings, label_list, sentences, probs, seconds):
  decode = settings["decode"]
  crfs = [m.crf_in(label_list) for m in members]
  crf = ner_crf.mean_params(crfs) if decode == "crf" else None
  combined = [geometric_mean(rows) for rows in zip(*probs)]
  predicted = decoding.decode(combined, label_list, decode, crf=crf)
  alone = []
  for rows, member_crf in zip(probs, crfs):
    labels = decoding.decode(rows, label_list, decode, crf=member_crf)
    alone.append(runner.summarize(ner_metrics.evaluate(
        [s.labels for s in sentences], labels)))
  record = dict(settings)
  for entry, scores in zip(record["members"], alone):
    entry["test_f1"] = scores["conlleval_f1"]
    entry["test_strict_f1"] = scores["strict_f1"]
  file_utils.atomic_write_json(os.path.join(opts.output_dir, ENSEMBLE_FILE),
                               record)
  described = ["ensemble of %d models (geometric mean of their label "
               "probabilities%s):" % (len(members), ", mean of their CRF "
                                      "scores" if crf is not None else "")]
  described += ["  %s (%s), alone: f1 %.4f" % (
      m.path, os.path.relpath(m.checkpoint, m.path), s["conlleval_f1"])
                for m, s in zip(members, alone)]
  described.append("decode: %s" % decode)
  extra = {"decode": decode, "members": record["members"],
           "predict_seconds": round(seconds, 1)}
  return runner.write_test_files(
      opts.output_dir, members[0].inputs.paths["test"], sentences, predicted,
      described, extra)


# ---------------------------------------------------------------------------
# Command line

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
  kw = {"flag_values": flag_values}
  flags.DEFINE_list("run_dirs", None,
                    "run_ner.py output directories of the members (two or "
                    "more, comma-separated).", **kw)
  common_flags.define_output_dir_flag(
      "Where the ensemble's results are written.", flag_values=flag_values)
  flags.DEFINE_string(
      "data_dir", None,
      "A dataset directory, or with --dataset the data root (as run_ner.py). "
      "Default: the first member's data.", **kw)
  flags.DEFINE_string("dataset", None,
                      "A dataset name of bio.ner.datasets (as run_ner.py).",
                      **kw)
  flags.DEFINE_enum(
      "decode", None, list(decoding.DECODERS),
      "argmax, viterbi or crf (bio.ner.decoding); default crf when every "
      "member has a CRF head, else viterbi.", **kw)
  flags.DEFINE_integer("predict_batch_size", 64, "Windows per batch.", **kw)
  flags.DEFINE_enum(
      "precision", "fp32", list(precision.PRECISIONS),
      "Compute precision of the predictions (as run_ner.py --precision).",
      **kw)


def options_from_flags(flag_values):
  return EnsembleOptions(
      run_dirs=tuple(flag_values.run_dirs or ()),
      output_dir=flag_values.output_dir, data_dir=flag_values.data_dir,
      dataset=flag_values.dataset, decode=flag_values.decode,
      predict_batch_size=flag_values.predict_batch_size,
      precision=flag_values.precision)


def main(_):
  logging.set_verbosity(logging.INFO)
  try:
    payload = run(options_from_flags(FLAGS))
  except USER_ERRORS as e:
    logging.error("%s", e)
    sys.stderr.write("ensemble: error: %s\n" % e)
    sys.exit(1)
  print("test F1 %.4f (members alone: %s) -> %s" % (
      payload["conlleval_f1"], ", ".join(
          "%.4f" % m["test_f1"] for m in payload["members"]),
      os.path.join(FLAGS.output_dir, "test_results.txt")))


if __name__ == "__main__":
  define_flags()
  app.run(main)
