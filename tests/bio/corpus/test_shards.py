"""bio.corpus.shards: shard bounds, atomic shards and part records, unit
clean-up and the completeness check of a re-run."""
import json
import os

import pytest

from bio.corpus import shards


def _docs(n):
  return [["Sentence %d of a document." % i, "Another sentence."]
          for i in range(n)]


def test_shards_are_bounded_and_end_every_document_with_a_blank_line(
    tmp_path):
  writer = shards.ShardWriter(str(tmp_path), "u", max_docs=2)
  for doc in _docs(5):
    writer.add(doc, "in.xml")
  records = writer.close()
  assert [r["file"] for r in records] == ["u-00000.txt", "u-00001.txt",
                                          "u-00002.txt"]
  assert [r["documents"] for r in records] == [2, 2, 1]
  text = (tmp_path / "u-00002.txt").read_text(encoding="utf-8")
  assert text == "Sentence 4 of a document.\nAnother sentence.\n\n"
  for r in records:
    assert os.path.getsize(tmp_path / r["file"]) == r["bytes"]
  assert sorted(os.listdir(tmp_path)) == [r["file"] for r in records]


def test_abort_leaves_only_finished_shards(tmp_path):
  writer = shards.ShardWriter(str(tmp_path), "u", max_docs=1)
  for doc in _docs(2):
    writer.add(doc, "in.xml")
  writer.abort()
  # The first shard was finished when the second opened; the second is gone.
  assert os.listdir(tmp_path) == ["u-00000.txt"]


def test_clear_unit_removes_its_files_and_temporaries_only(tmp_path):
  names = ["u-00000.txt", ".u-00001.txt.tmp123",
           ".u-00001.txt.tmp-123-0a1b2c3d", "u2-00000.txt", "notes.txt"]
  for name in names:
    (tmp_path / name).write_text("x")
  shards.write_part(str(tmp_path), {"unit": "u", "shards": []})
  shards.clear_unit(str(tmp_path), "u")
  assert sorted(os.listdir(tmp_path)) == sorted(
      ["u2-00000.txt", "notes.txt", shards.PARTS_DIR])
  assert os.listdir(tmp_path / shards.PARTS_DIR) == []


def test_load_complete_part_checks_fingerprint_inputs_and_sizes(tmp_path):
  writer = shards.ShardWriter(str(tmp_path), "u")
  writer.add(["One sentence."], "a.xml")
  part = {"unit": "u", "inputs": ["a.xml"], "fingerprint": "f1",
          "shards": writer.close(), "skipped": {}, "errors": []}
  shards.write_part(str(tmp_path), part)
  with open(shards.part_path(str(tmp_path), "u"), encoding="utf-8") as f:
    assert json.load(f) == part
  load = shards.load_complete_part
  assert load(str(tmp_path), "u", "f1", ["a.xml"]) == part
  assert load(str(tmp_path), "u", "f2", ["a.xml"]) is None
  assert load(str(tmp_path), "u", "f1", ["b.xml"]) is None
  (tmp_path / "u-00000.txt").write_text("One sentence.\n")  # cut short
  assert load(str(tmp_path), "u", "f1", ["a.xml"]) is None


def test_write_json_keeps_a_non_utf8_file_name(tmp_path):
  # os.walk gives such names as surrogate escapes; they must still encode.
  name = b"in-\xff.xml".decode("utf-8", "surrogateescape")
  path = str(tmp_path / "m.json")
  shards.write_json(path, {"file": name})
  with open(path, encoding="utf-8") as f:
    assert json.load(f) == {"file": name}
  assert os.listdir(tmp_path) == ["m.json"]


def test_empty_document_is_refused(tmp_path):
  with pytest.raises(ValueError, match="at least one sentence"):
    shards.ShardWriter(str(tmp_path), "u").add([], "a.xml")
