"""Tests for bio.experiments.corpus: the leak guard, de-duplication, shards,
re-runs and the command line, on a small fake data root (conftest)."""
import json
import os
import re
import subprocess
import sys

import pytest

from bio.experiments import corpus
from tests.bio.experiments import conftest as fake

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))


def _squash(text):
  return re.sub(r"\s", "", text).lower()


def _lines(output_dir):
  out = []
  for name in sorted(os.listdir(output_dir)):
    if name.endswith(".txt"):
      with open(os.path.join(output_dir, name), encoding="utf-8") as f:
        out.extend(line.rstrip("\n") for line in f)
  return out


def test_leak_guard_ignores_tokenization_and_catches_partial_overlap():
  guard = corpus.LeakGuard([fake.TEST[0][0], "Short one ."])
  assert guard.leaks(fake.LEAKED)
  # A differently split sentence that contains most of the test sentence.
  assert guard.leaks("Background: germline mutations (in APC) predispose to "
                     "colorectal cancer")
  assert guard.leaks("short ONE.")
  assert not guard.leaks("Short one, and more.")
  assert not guard.leaks("Rats given high doses of acetaminophen developed "
                         "hepatic necrosis within two days.")


def _opts(out, data, **kw):
  return corpus.CorpusOptions(output_dir=str(out), data_dir=data,
                              evaluate=("NCBI-disease",), num_shards=2, **kw)


def test_build_keeps_evaluation_text_out(fake_data, tmp_path):
  report = corpus.build(_opts(tmp_path / "c", fake_data))
  lines = _lines(tmp_path / "c")
  text = _squash("".join(lines))
  # Independent of the guard: no devel/test sentence is a substring.
  for words, _ in fake.DEV + fake.TEST:
    assert _squash(words) not in text
  # Everything else is there, once.
  for words, _ in fake.TRAIN:
    assert sum(_squash(l) == _squash(words) for l in lines) == 1
  assert "Cisplatin remains a mainstay of chemotherapy for testicular " \
         "cancer." in lines
  sources = report["sources"]
  assert sources["chemdner"]["dropped_leaks"] == 1
  assert sources["ner-train"] == {
      "documents": 1, "sentences": 4, "dropped_leaks": 0,
      "dropped_duplicates": 20, "repeated_words": 0,
      "words": sum(len(w.split()) for w, _ in fake.TRAIN)}
  sentences = [l for l in lines if l]
  assert report["total"]["sentences"] == len(sentences)
  assert report["total"]["documents"] == 4  # 3 abstracts + 1 NER document
  assert report["evaluation_sets"]["NCBI-disease"]["test"]["sentences"] == 3


def test_same_settings_reuse_other_settings_refuse(fake_data, tmp_path):
  out = tmp_path / "c"
  corpus.build(_opts(out, fake_data))
  before = {n: os.path.getmtime(out / n) for n in os.listdir(out)}
  corpus.build(_opts(out, fake_data))
  assert before == {n: os.path.getmtime(out / n) for n in os.listdir(out)}
  with pytest.raises(corpus.CorpusError, match="sentences_per_document"):
    corpus.build(_opts(out, fake_data, sentences_per_document=3))


def test_shards_are_deterministic(fake_data, tmp_path):
  corpus.build(_opts(tmp_path / "a", fake_data))
  corpus.build(_opts(tmp_path / "b", fake_data))
  for name in ("corpus-00000.txt", "corpus-00001.txt"):
    assert (tmp_path / "a" / name).read_bytes() == (
        tmp_path / "b" / name).read_bytes()


def test_refuses_a_directory_with_other_files(fake_data, tmp_path):
  out = tmp_path / "c"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  with pytest.raises(corpus.CorpusError, match="notes.txt"):
    corpus.build(_opts(out, fake_data))
  assert os.listdir(out) == ["notes.txt"]


def test_command_line_one_line_errors(fake_data, tmp_path):
  def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "bio.experiments.corpus", *args], cwd=ROOT,
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT))
  proc = run("--output_dir=%s" % (tmp_path / "c"), "--data_dir=" + fake_data,
             "--evaluate=NoSuchSet")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "bio.experiments.corpus: --evaluate: Unknown NER dataset 'NoSuchSet'")
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "c" / corpus.REPORT_FILE)
  proc = run("--output_dir=%s" % (tmp_path / "c"), "--data_dir=" + fake_data,
             "--num_shards=1")
  assert proc.returncode == 0, proc.stderr
  with open(tmp_path / "c" / corpus.REPORT_FILE, encoding="utf-8") as f:
    assert json.load(f)["shards"] == ["corpus-00000.txt"]


def test_task_repeat_copies_only_the_evaluated_training_text(fake_data,
                                                             tmp_path):
  other = [("Cystic fibrosis is caused by mutations in CFTR .",
            "B-Disease I-Disease O O O O O O O")]
  directory = os.path.join(fake_data, "ner", "BC5CDR-disease")
  os.makedirs(directory)
  for split in ("train", "devel", "test"):
    fake._write_split(os.path.join(directory, split + ".tsv"), other)
  once = corpus.build(_opts(tmp_path / "once", fake_data))
  report = corpus.build(_opts(tmp_path / "c", fake_data, task_repeat=3))
  lines = _lines(tmp_path / "c")
  for words, _ in fake.TRAIN:
    assert lines.count(words) == 3
  assert lines.count(other[0][0]) == 1
  # Copies never bring back evaluation text.
  text = _squash("".join(lines))
  for words, _ in fake.DEV + fake.TEST:
    assert _squash(words) not in text
  train_words = sum(len(w.split()) for w, _ in fake.TRAIN)
  assert report["sources"]["ner-train"]["repeated_words"] == 2 * train_words
  # The distinct text is counted once, as without copies.
  for key in ("documents", "sentences", "words", "dropped_leaks"):
    assert report["total"][key] == once["total"][key]
  assert report["settings"]["task_repeat"] == 3
  with pytest.raises(corpus.CorpusError, match="task_repeat: 3 -> 1"):
    corpus.build(_opts(tmp_path / "c", fake_data))
  with pytest.raises(corpus.CorpusError, match="--task_repeat must be"):
    corpus.build(_opts(tmp_path / "z", fake_data, task_repeat=0))


def test_report_from_before_task_repeat_is_reused(fake_data, tmp_path):
  out = tmp_path / "c"
  corpus.build(_opts(out, fake_data))
  path = out / corpus.REPORT_FILE
  report = json.loads(path.read_text())
  del report["settings"]["task_repeat"]
  path.write_text(json.dumps(report))
  assert corpus.build(_opts(out, fake_data)) == report
  with pytest.raises(corpus.CorpusError, match="task_repeat: 1 -> 2"):
    corpus.build(_opts(out, fake_data, task_repeat=2))
