"""Which SentencePiece model a checkpoint was trained with.

A checkpoint's token ids mean something only with the SentencePiece model
that made them: fine-tuning or pretraining on from a checkpoint with another
model silently trains on scrambled ids. Upstream records nothing; released
ALBERT archives ship the model beside the checkpoint (`30k-clean.model`).

Every checkpoint directory this project writes gets a record:

  <directory>/spm_record.json
  {"spm_model_file": "/abs/path/bio30k.model", "sha256": "<64 hex digits>",
   "size": 123456}

and a tool given an --init_checkpoint and an --spm_model_file checks them:

  vocab_record.write(output_dir, spm_model_file)
  vocab_record.check(init_checkpoint, spm_model_file, error_cls=MyError)

`check` compares SHA-256 digests against the record in the checkpoint's
directory or, without one, against the `*.model` files there. A checkpoint
with neither passes unchecked (nothing is known about it).
"""
import hashlib
import json
import os

import tensorflow.compat.v1 as tf

from albert import file_utils

RECORD_NAME = "spm_record.json"
_CHUNK = 1 << 20


def sha256_file(path):
  """Hex SHA-256 of a file (any tf.io.gfile filesystem)."""
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      chunk = f.read(_CHUNK)
      if not chunk:
        break
      digest.update(chunk)
  return digest.hexdigest()


def _absolute(path):
  return os.path.abspath(path) if file_utils.is_local(path) else path


def write(directory, spm_model_file):
  """Writes `<directory>/spm_record.json` atomically; returns its path."""
  record = {"spm_model_file": _absolute(spm_model_file),
            "sha256": sha256_file(spm_model_file),
            "size": tf.io.gfile.stat(spm_model_file).length}
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, RECORD_NAME)
  file_utils.atomic_write_json(path, record, sort_keys=True)
  return path


def read(directory):
  """The record of `directory` as a dict, or None if it has none."""
  path = os.path.join(directory, RECORD_NAME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    return json.loads(f.read())


def checkpoint_dir(checkpoint):
  """The directory of a checkpoint prefix, or `checkpoint` if a directory."""
  if tf.io.gfile.isdir(checkpoint):
    return checkpoint
  return os.path.dirname(checkpoint) or "."


def known_models(directory):
  """[(description, sha256)] of the models known to belong to `directory`:
  its record if any, else the `*.model` files in it; [] if none."""
  record = read(directory)
  if record is not None:
    return [("%s (recorded in %s)" % (
        record["spm_model_file"], os.path.join(directory, RECORD_NAME)),
             record["sha256"])]
  models = sorted(tf.io.gfile.glob(os.path.join(directory, "*.model")))
  return [(path, sha256_file(path)) for path in models]


def check(init_checkpoint, spm_model_file, error_cls=ValueError,
          what="--init_checkpoint"):
  """Raises `error_cls` if `spm_model_file` is not the checkpoint's model.

  Args:
    init_checkpoint: a checkpoint prefix or a directory of checkpoints.
    spm_model_file: the SentencePiece model the caller will use; None skips
      the check.
    error_cls: the exception raised on a mismatch.
    what: how the message names the checkpoint.
  Returns:
    True if the model was checked and matches, False if there was nothing
    to check against (or no model given).
  """
  if not spm_model_file or not init_checkpoint:
    return False
  known = known_models(checkpoint_dir(init_checkpoint))
  if not known:
    return False
  digest = sha256_file(spm_model_file)
  if any(digest == expected for _, expected in known):
    return True
  names = " or ".join(name for name, _ in known)
  raise error_cls(
      "--spm_model_file %s (sha256 %s) is not the SentencePiece model of %s "
      "%s, which is %s (sha256 %s): pass that model as --spm_model_file, or "
      "choose the checkpoint made with yours" % (
          spm_model_file, digest[:12], what, init_checkpoint, names,
          known[0][1][:12]))
