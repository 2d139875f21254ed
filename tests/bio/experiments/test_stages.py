"""Tests of bio.experiments.stages: skipping, failure and progress echo, with
small Python programs standing in for the project's tools."""
import io
import os
import sys
import textwrap
import time

import pytest

from bio.experiments import stages as stages_lib

# Logs like run_pretraining.py's: absl prefix, a step line with an ETA.
_TOOL = textwrap.dedent("""
    import sys, time
    for step in (1, 2, 3):
      print("I1127 01:27:32.822152 140190968998784 estimator_utils.py:290] "
            "step %d/3: loss 1.0, 5.000 steps/s, 160.0 examples/s, "
            "ETA 0:00:0%d" % (step, 3 - step), flush=True)
      print("INFO:tensorflow:examples/sec: 160.0", flush=True)
      time.sleep(0.6)
    sys.exit(int(sys.argv[1]))
    """)


def _stages(tmp_path, progress_seconds):
  out = io.StringIO()
  return stages_lib.Stages(str(tmp_path), job="test", out=out,
                           progress_seconds=progress_seconds), out


def _tool_argv(tmp_path, exit_code=0):
  script = tmp_path / "tool.py"
  script.write_text(_TOOL)
  return [sys.executable, str(script), str(exit_code)]


def test_progress_lines_are_echoed_without_the_log_prefix(tmp_path):
  stages, out = _stages(tmp_path, progress_seconds=0.2)
  assert stages.run("Pretrain", _tool_argv(tmp_path), done=None)
  text = out.getvalue()
  echoed = [l.strip() for l in text.splitlines() if "ETA" in l]
  assert echoed, text
  for line in echoed:
    assert line.startswith("step "), line
    assert "estimator_utils" not in line
  # Each echo is a newer message than the one before.
  assert len(set(echoed)) == len(echoed)
  assert "examples/sec" not in text
  log = tmp_path / "logs" / "01-pretrain.log"
  assert log.read_text().count("ETA") == 3


def test_no_echo_when_disabled(tmp_path):
  stages, out = _stages(tmp_path, progress_seconds=0)
  stages.run("Pretrain", _tool_argv(tmp_path), done=None)
  assert "ETA" not in out.getvalue()
  assert "done in" in out.getvalue()


def test_a_failing_tool_stops_the_job_with_its_log(tmp_path, capsys):
  stages, _ = _stages(tmp_path, progress_seconds=0.2)
  with pytest.raises(stages_lib.StageError) as err:
    stages.run("Pretrain", _tool_argv(tmp_path, exit_code=3), done=None)
  assert "stage 1 (Pretrain) failed, exit 3" in str(err.value)
  assert "step 3/3" in capsys.readouterr().err


def test_a_stage_whose_outputs_exist_is_skipped(tmp_path):
  done = tmp_path / "done.txt"
  done.write_text("x")
  stages, out = _stages(tmp_path, progress_seconds=0.2)
  marker = tmp_path / "ran"
  argv = [sys.executable, "-c", "open(%r, 'w')" % str(marker)]
  assert not stages.run("Build", argv, done=str(done))
  assert "already done" in out.getvalue()
  assert not marker.exists()
  assert stages.run("Build", argv, done=str(tmp_path / "missing"))
  assert marker.exists()


def test_progress_reader_waits_for_a_line_to_end(tmp_path):
  log = tmp_path / "x.log"
  log.write_text("")
  reader = stages_lib._ProgressReader(str(log))
  prefix = "I1127 01:27:32.822152 1 t.py:1] "
  with open(log, "a") as f:
    f.write(prefix + "step 1/2: ETA 0:00:01\n" + prefix + "step 2/2: ET")
  assert reader.poll() == "step 1/2: ETA 0:00:01"
  with open(log, "a") as f:
    f.write("A 0:00:00\nW1127 01:27:33.000000 1 t.py:2] a warning\n")
  assert reader.poll() == "step 2/2: ETA 0:00:00"
  reader.close()


def test_interrupt_kills_the_tool(tmp_path, monkeypatch):
  stages, _ = _stages(tmp_path, progress_seconds=0.2)
  pid_file = tmp_path / "pid"
  argv = [sys.executable, "-c",
          "import os, time; open(%r, 'w').write(str(os.getpid())); "
          "time.sleep(60)" % str(pid_file)]
  calls = []

  def interrupted(self, proc, log):
    while not pid_file.exists() or not pid_file.read_text():
      time.sleep(0.01)
    calls.append(proc)
    raise KeyboardInterrupt

  monkeypatch.setattr(stages_lib.Stages, "_wait", interrupted)
  with pytest.raises(KeyboardInterrupt):
    stages.run("Sleep", argv, done=None)
  proc = calls[0]
  assert proc.returncode is not None  # reaped: killed, not left running
  with pytest.raises(ProcessLookupError):
    os.kill(int(pid_file.read_text()), 0)
