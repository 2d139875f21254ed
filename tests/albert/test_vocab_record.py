"""Tests for albert/vocab_record.py."""
import hashlib
import json
import os

import pytest

from albert import vocab_record


class MismatchError(Exception):
  pass


def _model(path, content):
  with open(path, "wb") as f:
    f.write(content)
  return str(path)


def _checkpoint(directory, step=5):
  """A fake checkpoint prefix (only the files' names matter here)."""
  directory.mkdir(exist_ok=True)
  prefix = str(directory / ("model.ckpt-%d" % step))
  for ext in (".index", ".data-00000-of-00001"):
    open(prefix + ext, "wb").close()
  return prefix


def test_write_records_path_hash_and_size(tmp_path):
  content = b"spm model bytes\x00\x01" * 1000
  model = _model(tmp_path / "bio.model", content)
  path = vocab_record.write(str(tmp_path / "out"), model)
  assert path == str(tmp_path / "out" / "spm_record.json")
  with open(path) as f:
    record = json.load(f)
  assert record == {"spm_model_file": model,
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "size": len(content)}
  assert vocab_record.read(str(tmp_path / "out")) == record
  assert vocab_record.read(str(tmp_path)) is None
  assert not [n for n in os.listdir(tmp_path / "out") if ".tmp-" in n]


def test_check_against_record_by_hash_not_path(tmp_path):
  model = _model(tmp_path / "a.model", b"model A")
  prefix = _checkpoint(tmp_path / "ckpt")
  vocab_record.write(str(tmp_path / "ckpt"), model)
  # A copy elsewhere has the same bytes: accepted, as prefix or directory.
  copy = _model(tmp_path / "copy.model", b"model A")
  assert vocab_record.check(prefix, copy, MismatchError)
  assert vocab_record.check(str(tmp_path / "ckpt"), copy, MismatchError)
  other = _model(tmp_path / "b.model", b"model B")
  with pytest.raises(MismatchError) as e:
    vocab_record.check(prefix, other, MismatchError)
  message = str(e.value)
  assert other in message and model in message and prefix in message
  assert hashlib.sha256(b"model B").hexdigest()[:12] in message
  assert hashlib.sha256(b"model A").hexdigest()[:12] in message
  assert "pass that model as --spm_model_file" in message


def test_check_against_model_shipped_beside_checkpoint(tmp_path):
  # Released ALBERT archives: 30k-clean.model next to model.ckpt-best.
  prefix = _checkpoint(tmp_path / "albert_base", 0)
  shipped = _model(tmp_path / "albert_base" / "30k-clean.model", b"30k")
  assert vocab_record.check(prefix, _model(tmp_path / "x.model", b"30k"),
                            MismatchError)
  with pytest.raises(MismatchError, match="30k-clean.model"):
    vocab_record.check(prefix, _model(tmp_path / "y.model", b"bio"),
                       MismatchError)
  # A record wins over a stray *.model file.
  vocab_record.write(str(tmp_path / "albert_base"),
                     _model(tmp_path / "bio.model", b"bio"))
  assert vocab_record.check(prefix, str(tmp_path / "y.model"), MismatchError)
  with pytest.raises(MismatchError):
    vocab_record.check(prefix, shipped, MismatchError)


def test_check_without_anything_to_compare_passes(tmp_path):
  prefix = _checkpoint(tmp_path / "ckpt")
  model = _model(tmp_path / "a.model", b"A")
  assert vocab_record.check(prefix, model, MismatchError) is False
  assert vocab_record.check(prefix, None, MismatchError) is False
  assert vocab_record.check(None, model, MismatchError) is False
