"""The run directory of `run_ner.py`: what a fine-tuning run leaves behind,
and the one place that reads and writes it.

Training (`bio.ner.runner`) writes it, export (`bio.serving.export`) and
conversion tools read it, so neither needs the other:

  label_map.json        {label: id}, ids in label order
  run_config.json       tokenizer, model config and window settings (enough
                        to rebuild features and model for export)
  best_checkpoint.txt   the selected checkpoint, relative to the directory
  best/model.ckpt-N.*   a copy of the selected checkpoint (rotation of the
                        training checkpoints never deletes it)
  model.ckpt-N.*        the training checkpoints (TPUEstimator's)
  dev_results.txt/.json every checkpoint's dev scores and the choice (a
                        resumed run reloads them)
  test_results.txt/.json, test_predictions.txt, *.tf_record

run_config.json also holds, under "settings", what defines the run (data,
model, tokenizer, training settings); a later run in the same directory
must have the same ones (`differing_settings`). `clear` removes exactly
the files listed here, nothing a user put beside them.

Every file is written atomically (`albert.file_utils`).
"""
import json
import os
import re

import tensorflow.compat.v1 as tf

from albert import file_utils

LABEL_MAP_FILE = "label_map.json"
RUN_CONFIG_FILE = "run_config.json"
BEST_CHECKPOINT_FILE = "best_checkpoint.txt"
BEST_DIR = "best"
DEV_RESULTS_FILE = "dev_results.json"
SETTINGS_KEY = "settings"
# The output directory of bio.ner.ensemble (not a run directory): its
# members (run_dir, checkpoint), decoder and scores.
ENSEMBLE_FILE = "ensemble.json"
# Everything run_ner.py writes in a run directory (globs), for `clear`.
TOOL_FILES = (
    LABEL_MAP_FILE, RUN_CONFIG_FILE, BEST_CHECKPOINT_FILE, "dev_results.txt",
    DEV_RESULTS_FILE, "test_results.txt", "test_results.json",
    "test_predictions.txt", "train.tf_record", "dev.tf_record",
    "test.tf_record", "checkpoint", "graph.pbtxt", "events.out.tfevents.*",
    "model.ckpt-*", BEST_DIR + "/model.ckpt-*")
_CKPT_RE = re.compile(r"model\.ckpt-(\d+)\.index$")


def checkpoint_step(prefix):
  """The global step in a `model.ckpt-N` prefix, or None."""
  m = _CKPT_RE.search(prefix + ".index")
  return int(m.group(1)) if m else None


def list_checkpoints(run_dir):
  """[(step, prefix)] of the training checkpoints in `run_dir`, by step."""
  found = []
  for index_file in tf.io.gfile.glob(os.path.join(run_dir,
                                                  "model.ckpt-*.index")):
    step = checkpoint_step(index_file[:-len(".index")])
    if step is not None:
      found.append((step, index_file[:-len(".index")]))
  return sorted(found)


def write_label_map(run_dir, label_list):
  file_utils.atomic_write_json(os.path.join(run_dir, LABEL_MAP_FILE),
                               {label: i for i, label in enumerate(label_list)})


def read_label_list(run_dir):
  """Labels in id order, or None when the directory has no label map."""
  path = os.path.join(run_dir, LABEL_MAP_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    label_map = json.load(f)
  return [label for label, _ in sorted(label_map.items(),
                                       key=lambda kv: kv[1])]


def write_run_config(run_dir, config):
  file_utils.atomic_write_json(os.path.join(run_dir, RUN_CONFIG_FILE), config)


def _read_json(directory, name, default=None):
  """The JSON payload of file `name` in `directory`, or `default`."""
  path = os.path.join(directory, name)
  if not tf.io.gfile.exists(path):
    return default
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def read_run_config(run_dir):
  """The settings recorded by run_ner.py ({} when there are none)."""
  return _read_json(run_dir, RUN_CONFIG_FILE, {})


def read_ensemble(directory):
  """bio.ner.ensemble's record in `directory`, or None when it has none."""
  return _read_json(directory, ENSEMBLE_FILE)


def holds_ensemble(directory):
  """Whether `directory` is bio.ner.ensemble's output (and not a run)."""
  return (tf.io.gfile.exists(os.path.join(directory, ENSEMBLE_FILE)) and
          not tf.io.gfile.exists(os.path.join(directory, LABEL_MAP_FILE)))


def read_best_checkpoint(run_dir):
  """The selected checkpoint prefix recorded in `run_dir`, or None."""
  path = os.path.join(run_dir, BEST_CHECKPOINT_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    rel = f.read().strip()
  return os.path.join(run_dir, rel) if rel else None


def record_best(run_dir, prefix):
  """Copies checkpoint `prefix` to best/, records it, drops the previous one.

  The new files are complete before best_checkpoint.txt points at them, and
  the old ones are removed only after that. Returns the new prefix.
  """
  best_dir = os.path.join(run_dir, BEST_DIR)
  tf.io.gfile.makedirs(best_dir)
  best = os.path.join(best_dir, os.path.basename(prefix))
  if best != prefix:
    file_utils.copy_checkpoint(prefix, best)
  file_utils.atomic_write(os.path.join(run_dir, BEST_CHECKPOINT_FILE),
                          os.path.relpath(best, run_dir) + "\n")
  keep = os.path.basename(best) + "."
  for path in tf.io.gfile.glob(os.path.join(best_dir, "model.ckpt-*")):
    if not os.path.basename(path).startswith(keep):
      tf.io.gfile.remove(path)
  return best


def read_dev_results(run_dir):
  """The payload of dev_results.json, or None when there is none."""
  return _read_json(run_dir, DEV_RESULTS_FILE)


def results_decode(payload):
  """The decoder (bio.ner.decoding) a dev_results.json or test_results.json
  payload was computed with: "argmax" when it records none (written before
  run_ner.py had --decode)."""
  return (payload or {}).get("decode", "argmax")


def recorded_decode(run_dir):
  """The decoder the run's checkpoint was chosen with (dev_results.json)."""
  return results_decode(read_dev_results(run_dir))


def differing_settings(run_dir, settings):
  """[(name, recorded, given)] of the settings that differ from those
  recorded in `run_dir` (only names recorded there are compared, so run
  directories of older versions stay usable); a dict setting is compared
  key by key ("albert_config.num_hidden_layers")."""
  recorded = read_run_config(run_dir).get(SETTINGS_KEY) or {}
  differ = []
  for name, value in sorted(settings.items()):
    if name not in recorded or recorded[name] == value:
      continue
    if isinstance(value, dict) and isinstance(recorded[name], dict):
      differ.extend(("%s.%s" % (name, key), recorded[name].get(key),
                     value.get(key))
                    for key in sorted(set(value) | set(recorded[name]))
                    if recorded[name].get(key) != value.get(key))
    else:
      differ.append((name, recorded[name], value))
  return differ


def tool_files(run_dir):
  """The existing files of `run_dir` that run_ner.py writes (TOOL_FILES)."""
  found = []
  for pattern in TOOL_FILES:
    found.extend(tf.io.gfile.glob(os.path.join(run_dir, pattern)))
  return sorted(set(found))


def clear(run_dir):
  """Removes the files of an earlier run (TOOL_FILES only); returns them."""
  removed = tool_files(run_dir)
  for path in removed:
    tf.io.gfile.remove(path)
  best_dir = os.path.join(run_dir, BEST_DIR)
  if tf.io.gfile.isdir(best_dir) and not tf.io.gfile.listdir(best_dir):
    tf.io.gfile.remove(best_dir)
  return removed
