"""bio.serving.tag --resume after an interruption and a kill, and malformed
documents (reported, counted, skipped; --strict stops).

The in-process tests tag through conftest.py's `cached_tagger` (the format
tests have tagged the same shared files with it); the killed command-line
run is compared with the real model called in its batches."""
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import bioc
import pytest

from bio.serving import outputs
from bio.serving import tag

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))
SAMPLE = "pubmed-sample-0001.xml.gz"
KILLED_ARTICLES = 120


class Interrupted(Exception):
  pass


def _stop_after(tagger, calls, exc=KeyboardInterrupt):
  count = [0]

  def tag_texts(texts):
    count[0] += 1
    if count[0] > calls:
      raise exc()
    return tagger(texts)

  return tag_texts


def _no_temp_files(directory):
  return not [n for n in os.listdir(directory) if ".tmp-" in n]


def test_interrupted_run_resumes_to_the_same_bytes(cached_tagger,
                                                    pubmed_dir,
                                                    tmp_path):
  source = os.path.join(pubmed_dir, SAMPLE)
  whole = str(tmp_path / "whole.xml")
  total = tag.tag_file(cached_tagger, source, whole, "bioc", batch_size=8)[0]
  out = str(tmp_path / "resumed.xml")
  with pytest.raises(KeyboardInterrupt):
    tag.tag_file(_stop_after(cached_tagger, 9), source, out, "bioc",
                 batch_size=8, resume=True, part_documents=16)
  assert not os.path.exists(out)
  parts = sorted(os.listdir(outputs.parts_dir(out)))
  # 9 batches of 8 = 72 documents; complete parts of >= 16 hold 64.
  assert parts == ["manifest.json"] + ["part-%06d.16" % i for i in range(4)]
  tagged = tag.tag_file(cached_tagger, source, out, "bioc", batch_size=8,
                        resume=True, part_documents=16)[0]
  assert tagged == total - 64
  with open(whole, "rb") as a, open(out, "rb") as b:
    assert a.read() == b.read()
  assert not os.path.exists(outputs.parts_dir(out))
  assert _no_temp_files(str(tmp_path))


def test_parts_of_another_run_are_refused(cached_tagger, pubmed_dir,
                                          tmp_path):
  source = os.path.join(pubmed_dir, "pubmed26n1334.xml.gz")
  out = str(tmp_path / "out.jsonl")
  with pytest.raises(KeyboardInterrupt):
    tag.tag_file(_stop_after(cached_tagger, 2), source, out, batch_size=4,
                 resume=True, part_documents=4, run={"saved_model": "a"})
  with pytest.raises(outputs.ResumeError, match="holds parts of another run "
                     r"\(saved_model differ"):
    tag.tag_file(cached_tagger, source, out, batch_size=4, resume=True,
                 part_documents=4, run={"saved_model": "b"})
  with pytest.raises(outputs.ResumeError, match=r"\(batch_size, format differ"):
    tag.tag_file(cached_tagger, source, out, "pubtator", batch_size=5,
                 resume=True, run={"saved_model": "a"})
  assert not os.path.exists(out)


def _cli(*args, **kwargs):
  return subprocess.Popen([sys.executable, "-m", "bio.serving.tag", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT, **kwargs)


def _complete_parts(directory):
  if not os.path.isdir(directory):
    return []
  return [n for n in os.listdir(directory) if n.startswith("part-") and
          ".tmp-" not in n]


def _first_articles(source, path, count):
  """Writes the first `count` articles of a PubMed XML file to `path`."""
  with gzip.open(source) as f:
    root = ET.parse(f).getroot()
  for article in list(root)[count:]:
    root.remove(article)
  with gzip.open(path, "wb") as f:
    f.write(ET.tostring(root, encoding="utf-8"))
  return path


def test_killed_cli_run_resumes_to_the_same_bytes(tag_export, tagger,
                                                   pubmed_dir, tmp_path):
  # 120 of the sample's abstracts: six parts of 20, the kill after two.
  source = _first_articles(os.path.join(pubmed_dir, SAMPLE),
                           str(tmp_path / "first.xml.gz"), KILLED_ARTICLES)
  common = ["--saved_model=" + tag_export, "--input=" + source,
            "--format=bioc_json", "--batch_size=10"]
  whole = tmp_path / "whole.json"
  # The uninterrupted reference, in this process (the CLI calls the same
  # tag_file on the same model; a third CLI start-up would add nothing).
  tag.tag_file(tagger, source, str(whole), "bioc_json", batch_size=10)
  out = str(tmp_path / "resumed.json")
  parts = outputs.parts_dir(out)
  proc = _cli(*common, "--output=" + out, "--resume", "--part_documents=20")
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None and len(
      _complete_parts(parts)) < 2:
    time.sleep(0.05)
  assert proc.poll() is None, "finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(out)
  assert len(_complete_parts(parts)) >= 2
  proc = _cli(*common, "--output=" + out, "--resume", "--part_documents=20")
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-2000:]
  assert "already in" in err
  assert whole.read_bytes() == open(out, "rb").read()
  ids = [d["id"] for d in json.loads(whole.read_text())["documents"]]
  # Every abstract once.
  assert len(ids) == len(set(ids)) == KILLED_ARTICLES


BAD_PUBTATOR = """1|t|BRCA1 in breast cancer
1|a|Mutations of BRCA1 .
1\t0\t5\tBRCA1\tGene\tNCBI:672

2|t|Broken offsets
2|a|here
2\t0\tx\tBroken\tGene

3|t|Wrong mention
3|a|text
3\t0\t5\tRight\tGene

4|t|Tamoxifen and cancer
4|a|fine again
"""


def _bad_pubtator(tmp_path):
  path = tmp_path / "in.pubtator"
  data = BAD_PUBTATOR.encode("utf-8") + b"\n5|t|bad \xff byte\n5|a|x\n"
  path.write_bytes(data)
  return str(path)


def test_malformed_documents_are_reported_and_skipped(cached_tagger,
                                                      tmp_path):
  source = _bad_pubtator(tmp_path)
  problems = []
  out = str(tmp_path / "out.xml")
  docs = tag.tag_file(cached_tagger, source, out, "bioc", problems=problems)[0]
  assert docs == 2
  with open(out, "rb") as f:
    collection = bioc.biocxml.load(f)
  assert [d.id for d in collection.documents] == ["1", "4"]
  kept = collection.documents[0].passages[0].annotations[0]
  assert (kept.id, kept.text, kept.infons["identifier"]) == (
      "0", "BRCA1", "NCBI:672")
  assert [(p.file, p.doc_id) for p in problems] == [
      (source, "2"), (source, "3"), (source, "5")]
  assert problems[0].reason.startswith("line 7: annotation offsets")
  assert "'Right' but the text there is 'Wrong'" in problems[1].reason
  assert "UTF-8" in problems[2].reason


def test_strict_stops_and_writes_nothing(cached_tagger, tmp_path):
  source = _bad_pubtator(tmp_path)
  out = str(tmp_path / "out.xml")
  with pytest.raises(tag.TagError, match=r"in.pubtator: document 2: .*"
                     r"--strict"):
    tag.tag_file(cached_tagger, source, out, "bioc", strict=True)
  assert not os.path.exists(out) and _no_temp_files(str(tmp_path))
  with pytest.raises(tag.TagError, match="--strict"):
    tag.tag_file(cached_tagger, source, out, "bioc", strict=True, resume=True)
  assert sorted(os.listdir(tmp_path)) == ["in.pubtator"]  # no parts either


def test_cli_bad_documents_one_line_each_and_status_1(tag_export, tmp_path):
  source = _bad_pubtator(tmp_path)
  out = tmp_path / "out.pubtator"
  # Both runs at once: each is mostly a TensorFlow start-up.
  skipping = _cli("--saved_model=" + tag_export, "--input=" + source,
                  "--output=%s" % out, "--format=pubtator")
  strict = _cli("--saved_model=" + tag_export, "--input=" + source,
                "--output=%s" % (tmp_path / "strict.pubtator"), "--strict")
  _, err = skipping.communicate(timeout=600)
  assert skipping.returncode == 1 and "Traceback" not in err
  assert "3 malformed documents skipped" in err
  assert [l.split("|")[0] for l in out.read_text().splitlines()
          if "|t|" in l] == ["1", "4"]
  _, err = strict.communicate(timeout=600)
  assert strict.returncode == 1 and "Traceback" not in err
  assert err.strip().splitlines()[-1].startswith("bio.serving.tag: error: ")
  assert not (tmp_path / "strict.pubtator").exists()


def test_truncated_bioc_keeps_the_documents_before(cached_tagger, pubmed_dir,
                                                   tmp_path):
  full = str(tmp_path / "full.xml")
  tag.tag_file(cached_tagger, os.path.join(pubmed_dir, "pubmed26n1334.xml.gz"),
               full, "bioc")
  data = open(full, "rb").read()
  cut = data.index(b"<document>", len(data) // 2) + 40
  broken = tmp_path / "broken.xml"
  broken.write_bytes(data[:cut])
  problems = []
  out = str(tmp_path / "again.xml")
  docs = tag.tag_file(cached_tagger, str(broken), out, "bioc",
                      problems=problems)[0]
  with open(full, "rb") as f:
    want = [d.id for d in bioc.biocxml.load(f).documents]
  with open(out, "rb") as f:
    again = bioc.biocxml.load(f)
  assert [d.id for d in again.documents] == want[:docs]
  assert 0 < docs < len(want)
  assert len(problems) == 1 and "malformed XML" in problems[0].reason
  # Tagged again: the first run's annotations are kept, new ids added.
  first = again.documents[0]
  anns = [a for p in first.passages for a in p.annotations]
  ids = [a.id for a in anns]
  assert len(ids) == len(set(ids))
  with open(full, "rb") as f:
    before = bioc.biocxml.load(f).documents[0]
  assert len(anns) == 2 * sum(len(p.annotations) for p in before.passages)
  assert {a.id for p in before.passages for a in p.annotations} < set(ids)
