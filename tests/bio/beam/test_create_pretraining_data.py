"""bio.beam.create_pretraining_data against the single-machine sharded
albert.create_pretraining_data (FnApiRunner, CPU).

Skipped when apache_beam is not installed (`pip install .[beam]`). The text
shards come from the corpus fixture of tests/bio/beam/conftest.py.
"""
import json
import os
import subprocess
import sys

import pytest

beam = pytest.importorskip("apache_beam")

# pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf

from albert import create_pretraining_data as cpd
from bio.beam import create_pretraining_data as beam_cpd

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
RUNNER = ["--runner=FnApiRunner"]


# ------------------------------------------------------ TFRecord builder ---

@pytest.fixture(scope="session")
def text_shards(corpus_runs, tmp_path_factory):
  """Four corpus shards, and a fifth that is not UTF-8 at line 3."""
  beam_dir, manifest = corpus_runs["beam"]
  names = [s["file"] for s in manifest["shards"]][:4]
  work = tmp_path_factory.mktemp("text_shards")
  paths = []
  for name in names:
    with open(os.path.join(beam_dir, name), "rb") as f:
      (work / name).write_bytes(f.read())
    paths.append(str(work / name))
  bad = work / "zz-bad.txt"
  bad.write_bytes(b"A first sentence.\nAnother one.\nbroken \xff byte\n")
  paths.append(str(bad))
  return sorted(paths)


_OPTIONS = cpd.DataOptions(max_seq_length=64, dupe_factor=2,
                           max_predictions_per_seq=10)


def _records(path):
  return list(tf.io.tf_record_iterator(path))


@pytest.fixture(scope="session")
def tfrecord_runs(text_shards, spm_model_file, tmp_path_factory):
  work = tmp_path_factory.mktemp("tfrecords")
  args = {"vocab_file": None, "spm_model_file": spm_model_file}
  single_out = cpd.sharded_output_files(text_shards, str(work / "single"))
  single = cpd.run_sharded(text_shards, single_out, args, 7, _OPTIONS)
  beam_out = cpd.sharded_output_files(text_shards, str(work / "beam"))
  report, counters = beam_cpd.run(text_shards, beam_out, args, 7, _OPTIONS,
                                  pipeline_args=RUNNER)
  return {"single": (single_out, single), "beam": (beam_out, report),
          "counters": counters, "args": args, "work": work}


def test_beam_tfrecords_equal_single_machine_per_shard(tfrecord_runs):
  single_out, single = tfrecord_runs["single"]
  beam_out, report = tfrecord_runs["beam"]
  assert [r["status"] for r in report] == ["written"] * 4 + ["failed"]
  for i in range(4):
    ours, theirs = _records(beam_out[i]), _records(single_out[i])
    assert len(theirs) == single[i].num_instances > 0
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs  # the same order too: one seeded writer per shard
    assert report[i]["seed"] == cpd.shard_seed(7, i)
  # Seeds differ between shards, so the same text would not repeat masks.
  assert len({r["seed"] for r in report}) == 5


def test_bad_shard_is_counted_and_reported_and_others_written(tfrecord_runs):
  beam_out, report = tfrecord_runs["beam"]
  counters = tfrecord_runs["counters"]
  assert "zz-bad.txt:3: not valid UTF-8" in report[4]["error"]
  assert not os.path.exists(beam_out[4])
  assert counters["shards_failed"] == 1
  assert counters["shards_written"] == 4
  assert counters["instances"] == sum(len(_records(p)) for p in beam_out[:4])
  with open(os.path.join(os.path.dirname(beam_out[0]),
                         beam_cpd.REPORT_NAME), encoding="utf-8") as f:
    assert json.load(f) == report
  assert not [n for n in os.listdir(os.path.dirname(beam_out[0]))
              if "tmp" in n]


def test_rerun_skips_complete_outputs(tfrecord_runs, text_shards):
  beam_out, _ = tfrecord_runs["beam"]
  before = {p: os.stat(p).st_mtime_ns for p in beam_out[:4]}
  report, counters = beam_cpd.run(text_shards, beam_out, tfrecord_runs["args"],
                                  7, _OPTIONS, pipeline_args=RUNNER)
  assert [r["status"] for r in report] == ["skipped"] * 4 + ["failed"]
  assert counters["shards_skipped"] == 4
  assert counters.get("instances", 0) == 0
  assert {p: os.stat(p).st_mtime_ns for p in beam_out[:4]} == before


def test_shard_jobs_reject_colliding_outputs():
  with pytest.raises(cpd.InputError, match="would both write"):
    beam_cpd.shard_jobs(["a/x.txt", "b/x.txt"], ["o/x.tfrecord"] * 2, 1)
  with pytest.raises(cpd.InputError, match="one output file per input"):
    beam_cpd.shard_jobs(["a.txt"], [], 1)


# ------------------------------------------------------------------- CLI ---

def _cli(module, *args):
  return subprocess.run(
      [sys.executable, "-m", module] + list(args), cwd=ROOT,
      capture_output=True, text=True, timeout=300, check=False)


def test_cli_pipeline_options_pass_through_and_exit_status(
    text_shards, spm_model_file, tmp_path):
  # Beam options (--runner, --direct_num_workers) reach Beam; a failed shard
  # gives exit status 1.
  out = tmp_path / "tf"
  proc = _cli("bio.beam.create_pretraining_data",
              "--input_file=%s" % ",".join(text_shards[3:]),
              "--output_dir=%s" % out, "--spm_model_file=" + spm_model_file,
              "--max_seq_length=64", "--dupe_factor=1", "--runner",
              "FnApiRunner", "--direct_num_workers=1")
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "FAILED shard 1: %s:3" % text_shards[4] in proc.stderr
  assert "runner FnApiRunner" in proc.stderr
  assert sorted(os.listdir(out)) == sorted(
      [beam_cpd.REPORT_NAME, os.path.basename(
          cpd.sharded_output_files(text_shards[3:4], str(out))[0])])
