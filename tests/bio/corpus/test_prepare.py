"""bio.corpus.prepare end to end: shards, manifest, resuming, bad input."""
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys

from absl import app
from absl import flags
import pytest

from bio.corpus import prepare
from bio.corpus import shards

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "jats")


def _settings(source, input_glob, output_dir, **overrides):
  return prepare.default_settings(
      source, input_glob, output_dir, **dict(
          dict(shard_bytes=0, unit_bytes=1 << 20, progress_secs=60),
          **overrides))


def _run(*args, **kwargs):
  return prepare.run(_settings(*args, **kwargs),
                            report=lambda msg: None)


def _documents(path):
  """A shard read the way upstream create_pretraining_data reads input."""
  docs = [[]]
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if not line:
        docs.append([])
      else:
        docs[-1].append(line)
  return [d for d in docs if d]


def _check_format(path):
  with open(path, encoding="utf-8") as f:
    text = f.read()
  # One blank line after every document, the last one included.
  assert text and not text.startswith("\n") and text.endswith("\n\n")
  assert "\n\n\n" not in text
  for line in text.split("\n")[:-1]:
    assert line == line.strip()


def _pubmed_records(n, start=0):
  records = []
  for i in range(start, start + n):
    records.append(
        '<PubmedArticle><MedlineCitation><PMID Version="1">%d</PMID>'
        "<Article><ArticleTitle>Crafted title number %d for the test."
        "</ArticleTitle><Abstract><AbstractText>First sentence of abstract "
        "%d. Second sentence, e.g. with an example.</AbstractText>"
        "</Abstract></Article></MedlineCitation></PubmedArticle>"
        % (i + 1, i, i))
  return records


def _write_pubmed(path, records, gz=True):
  data = ("<PubmedArticleSet>%s</PubmedArticleSet>" % "".join(
      records)).encode("utf-8")
  with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
    f.write(data)
  return str(path)


def test_pmc_fixtures_sharded_by_documents(tmp_path):
  out = str(tmp_path / "out")
  manifest = _run("pmc", FIXTURES, out, shard_docs=3)
  # 7 JATS fixtures + 1 text fixture, all small: one unit.
  assert manifest["totals"]["documents"] == 8
  assert [s["documents"] for s in manifest["shards"]] == [3, 3, 2]
  assert manifest["units"][0]["unit"] == "files-PMC9000020"
  for shard in manifest["shards"]:
    path = os.path.join(out, shard["file"])
    _check_format(path)
    docs = _documents(path)
    assert shard["documents"] == len(docs)
    assert shard["sentences"] == sum(len(d) for d in docs)
    assert shard["words"] == sum(len(s.split()) for d in docs for s in d)
    assert shard["bytes"] == os.path.getsize(path)
  text = "".join(open(os.path.join(out, s["file"]), encoding="utf-8").read()
                 for s in manifest["shards"])
  assert "BODY_EIGHT second condition" in text
  assert "Short line" not in text  # < 20 characters
  assert "Introduction" not in text
  with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
    assert json.load(f) == manifest
  assert not glob.glob(os.path.join(out, ".*tmp*"))


def test_shard_bytes_bound_and_two_workers_match_one(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  for k in range(3):
    _write_pubmed(inputs / ("pubmed26n%04d.xml.gz" % (k + 1)),
                  _pubmed_records(40, start=100 * k))
  one = _run("pubmed", str(inputs), str(tmp_path / "one"), shard_bytes=2000)
  two = _run("pubmed", str(inputs), str(tmp_path / "two"), shard_bytes=2000,
             num_workers=2)
  assert one["totals"] == two["totals"]
  assert one["totals"]["documents"] == 120
  for shard in one["shards"]:
    assert shard["bytes"] <= 2000
    with open(tmp_path / "one" / shard["file"], "rb") as a, open(
        tmp_path / "two" / shard["file"], "rb") as b:
      assert a.read() == b.read()
  assert len(one["shards"]) > 3
  # Sentences: the splitter ran (title + two abstract sentences).
  doc = _documents(str(tmp_path / "one" / one["shards"][0]["file"]))[0]
  assert doc == ["Crafted title number 0 for the test.",
                 "First sentence of abstract 0.",
                 "Second sentence, e.g. with an example."]


def test_rerun_skips_complete_units_and_redoes_broken_ones(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  for k in range(3):
    _write_pubmed(inputs / ("pubmed26n%04d.xml.gz" % (k + 1)),
                  _pubmed_records(5, start=10 * k))
  out = tmp_path / "out"
  first = _run("pubmed", str(inputs), str(out))
  mtimes = {s["file"]: os.stat(out / s["file"]).st_mtime_ns
            for s in first["shards"]}
  messages = []
  second = prepare.run(_settings("pubmed", str(inputs), str(out)),
                              report=messages.append)
  assert "3 of 3 units already complete: skipped" in messages
  assert second["shards"] == first["shards"]
  assert {s["file"]: os.stat(out / s["file"]).st_mtime_ns
          for s in second["shards"]} == mtimes
  # A killed run: one unit's part is missing and a temporary shard is left.
  os.remove(shards.part_path(str(out), "pubmed26n0002"))
  (out / ".pubmed26n0002-00001.txt.tmp999").write_text("half a shard")
  (out / "pubmed26n0003-00000.txt").write_text("truncated")
  messages = []
  third = prepare.run(_settings("pubmed", str(inputs), str(out)),
                             report=messages.append)
  assert "1 of 3 units already complete: skipped" in messages
  assert third["shards"] == first["shards"]
  assert not (out / ".pubmed26n0002-00001.txt.tmp999").exists()
  assert os.stat(out / "pubmed26n0001-00000.txt").st_mtime_ns == mtimes[
      "pubmed26n0001-00000.txt"]
  # Changed settings redo everything.
  messages = []
  prepare.run(_settings("pubmed", str(inputs), str(out),
                               abstract_labels=True), report=messages.append)
  assert not any("already complete" in m for m in messages)


def test_new_update_file_redoes_only_the_units_it_changes(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  _write_pubmed(inputs / "pubmed26n0001.xml.gz", _pubmed_records(5))
  _write_pubmed(inputs / "pubmed26n0002.xml.gz", _pubmed_records(5, 10))
  out = tmp_path / "out"
  first = _run("pubmed", str(inputs), str(out))
  assert first["totals"]["documents"] == 10
  revised = _pubmed_records(1, start=2)[0].replace("Crafted title",
                                                   "Revised title")
  _write_pubmed(inputs / "pubmed26n0003.xml.gz", [revised])
  messages = []
  second = prepare.run(_settings("pubmed", str(inputs), str(out)),
                              report=messages.append)
  # Only pubmed26n0001 lost a record: pubmed26n0002 is kept as it was.
  assert "1 of 3 units already complete: skipped" in messages
  assert second["totals"]["documents"] == 10
  assert second["totals"]["skipped"] == {"superseded": 1}
  text = "".join(open(out / s["file"], encoding="utf-8").read()
                 for s in second["shards"])
  assert text.count("title number 2 ") == 1
  assert "Revised title number 2 for the test." in text


def test_bad_inputs_are_counted_and_the_run_goes_on(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  _write_pubmed(inputs / "pubmed26n0001.xml.gz", _pubmed_records(30))
  other = _write_pubmed(tmp_path / "other.xml.gz",
                        _pubmed_records(300, start=100))
  with open(other, "rb") as f:
    data = f.read()
  (inputs / "pubmed26n0002.xml.gz").write_bytes(data[:len(data) // 2])
  (inputs / "pubmed26n0003.xml.gz").write_bytes(b"")
  _write_pubmed(inputs / "pubmed26n0004.xml", ["<PubmedArticle><broken>"],
                gz=False)
  out = tmp_path / "out"
  manifest = _run("pubmed", str(inputs), str(out))
  reasons = {os.path.basename(e["file"]): e["reason"]
             for e in manifest["errors"]}
  assert set(reasons) == {"pubmed26n0002.xml.gz", "pubmed26n0003.xml.gz",
                          "pubmed26n0004.xml"}
  assert "truncated gzip" in reasons["pubmed26n0002.xml.gz"]
  assert reasons["pubmed26n0003.xml.gz"] == "empty file"
  assert "malformed XML" in reasons["pubmed26n0004.xml"]
  assert manifest["totals"]["skipped"]["bad_file"] == 3
  assert manifest["totals"]["errors"] == 3
  # The truncated file keeps the complete records before the damage.
  kept = [s["documents"] for s in manifest["shards"]]
  assert kept[0] == 30 and 0 < kept[1] < 300 and len(kept) == 2
  assert len(manifest["plan_errors"]) == 3
  # No shard of a file that gave no document, no temporary file anywhere.
  names = sorted(os.listdir(out))
  assert [n for n in names if n.endswith(".txt")] == [
      "pubmed26n0001-00000.txt", "pubmed26n0002-00000.txt"]
  assert not [n for n in names if "tmp" in n]


def _cli(*args):
  return subprocess.run(
      [sys.executable, "-m", "bio.corpus.prepare"] + list(args), cwd=ROOT,
      capture_output=True, text=True, timeout=120, check=False)


def test_cli_progress_strict_exit_and_usage_errors(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  shutil.copy(os.path.join(FIXTURES, "exclude_table.nxml"), inputs)
  (inputs / "broken.nxml").write_bytes(b"<article><body>")
  out = tmp_path / "out"
  proc = _cli("--source=pmc", "--input=%s/*.nxml" % inputs,
              "--output_dir=%s" % out, "--progress_secs=0")
  assert proc.returncode == 0, proc.stderr
  assert "files 2/2 (units 1/1), documents 1," in proc.stderr
  assert "unreadable: %s" % (inputs / "broken.nxml") in proc.stderr
  proc = _cli("--source=pmc", "--input=%s/*.nxml" % inputs,
              "--output_dir=%s" % out, "--strict")
  assert proc.returncode == 3
  proc = _cli("--source=pmc", "--input=%s/nothing*.nxml" % inputs,
              "--output_dir=%s" % out)
  assert proc.returncode != 0 and "nothing matches" in proc.stderr
  proc = _cli("--source=pmc", "--input=%s" % inputs, "--output_dir=%s" % out,
              "--num_workers=0")
  assert proc.returncode != 0 and "num_workers" in proc.stderr


def test_cli_output_dir_that_cannot_be_made_is_one_error_line(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  shutil.copy(os.path.join(FIXTURES, "exclude_table.nxml"), inputs)
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  proc = _cli("--source=pmc", "--input=%s" % inputs,
              "--output_dir=%s" % (blocker / "out"))
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr
  assert "--output_dir %s: cannot create it" % (blocker / "out") in (
      proc.stderr)
  assert blocker.read_text() == "not a directory"
  pubmed_in = tmp_path / "pubmed"
  pubmed_in.mkdir()
  _write_pubmed(pubmed_in / "pubmed26n0001.xml.gz", _pubmed_records(2))
  proc = _cli("--source=pubmed", "--input=%s" % pubmed_in,
              "--output_dir=%s" % (tmp_path / "out"),
              "--pubmed_plan=%s" % (blocker / "plan.npz"))
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "--pubmed_plan %s: cannot write it" % (blocker / "plan.npz") in (
      proc.stderr)


def test_plan_only_and_host_sharding(tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  for k in range(4):
    _write_pubmed(inputs / ("pubmed26n%04d.xml.gz" % (k + 1)),
                  _pubmed_records(3, start=10 * k))
  plan = str(tmp_path / "plan.npz")
  assert _run("pubmed", str(inputs), str(tmp_path / "x"), plan=plan,
              plan_only=True) is None
  assert os.path.exists(plan)
  out = tmp_path / "out"
  messages = []
  hosts = [prepare.run(
      _settings("pubmed", str(inputs), str(out), plan=plan, num_hosts=2,
                host_index=h), report=messages.append) for h in range(2)]
  assert messages.count("using the dedup plan in %s" % plan) == 2
  assert [[u["unit"] for u in m["units"]] for m in hosts] == [
      ["pubmed26n0001", "pubmed26n0003"], ["pubmed26n0002", "pubmed26n0004"]]
  assert os.path.exists(out / "manifest-host001-of-002.json")
  # A single-host run over the shared directory only writes the manifest.
  messages = []
  whole = prepare.run(_settings("pubmed", str(inputs), str(out),
                                       plan=plan), report=messages.append)
  assert "4 of 4 units already complete: skipped" in messages
  assert whole["totals"]["documents"] == 12
  # A damaged plan file is rebuilt, not trusted.
  with open(plan, "wb") as f:
    f.write(b"not a zip")
  messages = []
  prepare.run(_settings("pubmed", str(inputs), str(out), plan=plan),
                     report=messages.append)
  assert "%s is unreadable: rebuilding it" % plan in messages
  assert "4 of 4 units already complete: skipped" in messages


@pytest.mark.parametrize("bad,message", [
    (["--shard_docs=-1"], "must be >= 0"),
    (["--host_index=2"], "must be in"),
    (["--num_workers=0"], "at least 1"),
    (["--source=pmc", "--plan_only"], "for --source=pubmed"),
])
def test_flag_validation(bad, message):
  # A private FlagValues: other tests' global flags are left alone.
  flag_values = flags.FlagValues()
  prepare.define_flags(flag_values)
  flag_values(["prog", "--source=pubmed", "--input=x", "--output_dir=y"] +
              bad)
  with pytest.raises(app.UsageError, match=message):
    prepare.settings_from_flags(flag_values)
