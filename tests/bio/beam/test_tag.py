"""bio.beam.tag on the local runner against bio.serving.tag on the same
files: the same bytes per file, counters, malformed input, re-runs.

Skipped when apache_beam is not installed (`pip install .[beam]`). The
model is the tiny random-weight export of tests/bio/tiny_ner.py,
built once per session for these tests and the serving ones
(tests/bio/conftest.py).
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

beam = pytest.importorskip("apache_beam")

# pylint: disable=wrong-import-position
import bioc

from bio.beam import tag as beam_tag
from bio.serving import tag

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))
RUNNER = ["--runner=FnApiRunner"]


@pytest.fixture(scope="module")
def beam_export(tag_export):
  """The session's tiny export (tests/bio/conftest.py)."""
  return tag_export


@pytest.fixture(scope="module")
def inputs(shared_data_dir, tmp_path_factory):
  """The shared PMC articles and a PubMed file, a PubTator file with one
  malformed document, and a file that is not XML at all."""
  work = tmp_path_factory.mktemp("beam_tag_inputs")
  for path in glob.glob(os.path.join(shared_data_dir, "pmc", "*.nxml")) + [
      os.path.join(shared_data_dir, "pubmed", "pubmed26n1334.xml.gz")]:
    shutil.copy(path, work)
  (work / "mixed.pubtator").write_text(
      "7|t|BRCA1 in breast cancer\n7|a|x\n7\t0\t5\tBRCA1\tGene\n\n"
      "8|t|bad\n8|a|y\n8\t0\t9\tbad\tGene\n\n9|t|fine\n9|a|z\n",
      encoding="utf-8")
  (work / "broken.xml").write_text("<PubmedArticleSet><PubmedArt",
                                   encoding="utf-8")
  return str(work)


@pytest.fixture(scope="module")
def beam_run(beam_export, inputs, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("beam_tag_out"))
  report, counters = beam_tag.run(os.path.join(inputs, "*"), out,
                                  beam_export, "bioc", pipeline_args=RUNNER)
  return out, report, counters


def test_beam_outputs_are_bio_serving_tag_outputs(beam_run, tagger, tmp_path):
  out, report, counters = beam_run
  documents = entities = 0
  for entry in report:
    if entry["status"] == "failed":
      continue
    single = str(tmp_path / os.path.basename(entry["output"]))
    docs, ents = tag.tag_file(tagger, entry["input"], single, "bioc")
    with open(single, "rb") as a, open(entry["output"], "rb") as b:
      assert a.read() == b.read(), entry["input"]
    with open(entry["output"], "rb") as f:
      assert len(bioc.biocxml.load(f).documents) == docs
    documents += docs
    entities += ents
  assert counters["documents"] == documents == 5 + 27 + 2
  assert counters["entities"] == entities > 0
  assert counters["files_written"] == 7
  assert counters["files_failed"] == 1
  assert counters["bad_documents"] == 2  # PubTator doc 8 + the broken file


def test_report_names_every_bad_document(beam_run, inputs):
  _, report, _ = beam_run
  by_name = {os.path.basename(r["input"]): r for r in report}
  assert by_name["mixed.pubtator"]["bad_documents"] == [
      ["8", "line 7: annotation 0-9 is outside the text (length 5)"]]
  assert by_name["broken.xml"]["status"] == "failed"
  assert "no document could be read" in by_name["broken.xml"]["error"]
  assert not os.path.exists(by_name["broken.xml"]["output"])


def test_rerun_skips_existing_outputs(beam_run, beam_export, inputs):
  out, _, _ = beam_run
  before = {n: open(os.path.join(out, n), "rb").read()
            for n in os.listdir(out) if n != beam_tag.REPORT_NAME}
  report, counters = beam_tag.run(os.path.join(inputs, "*"), out,
                                  beam_export, "bioc", pipeline_args=RUNNER)
  assert counters.get("files_skipped") == 7
  assert counters.get("files_failed") == 1  # still broken
  assert not counters.get("files_written")
  assert before == {n: open(os.path.join(out, n), "rb").read()
                    for n in os.listdir(out) if n != beam_tag.REPORT_NAME}


def test_output_names_and_collisions():
  assert beam_tag.output_name("gs://b/pubmed26n0001.xml.gz", "bioc") == (
      "pubmed26n0001.xml")
  assert beam_tag.output_name("/d/PMC1.nxml", "bioc_json") == "PMC1.json"
  assert beam_tag.output_name("/d/a.pubtator", "pubtator") == "a.pubtator"
  with pytest.raises(ValueError, match="would both write"):
    beam_tag.file_jobs(["/x/a.xml.gz", "/y/a.xml.gz"], "/out", "jsonl")


def _start_cli(*args):
  return subprocess.Popen(
      [sys.executable, "-m", "bio.beam.tag", *args] + RUNNER,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_cli_exit_status_and_one_line_errors(beam_export, inputs, tmp_path):
  # Both runs at once: each is mostly an interpreter and TensorFlow start-up.
  mixed = _start_cli("--saved_model=" + beam_export,
                     "--input=" + os.path.join(inputs, "*.pubtator"),
                     "--output_dir=%s" % (tmp_path / "o"),
                     "--format=pubtator")
  no_match = _start_cli("--saved_model=" + beam_export,
                        "--input=%s" % (tmp_path / "none*.xml"),
                        "--output_dir=%s" % (tmp_path / "o2"))
  _, err = mixed.communicate(timeout=600)
  assert mixed.returncode == 1 and "Traceback" not in err
  text = (tmp_path / "o" / "mixed.pubtator").read_text(encoding="utf-8")
  assert [l.split("|")[0] for l in text.splitlines() if "|t|" in l] == [
      "7", "9"]
  _, err = no_match.communicate(timeout=600)
  assert no_match.returncode == 1 and "Traceback" not in err
  assert err.strip().splitlines()[-1] == (
      "bio.beam.tag: error: --input %s matches no file" % (
          tmp_path / "none*.xml"))
