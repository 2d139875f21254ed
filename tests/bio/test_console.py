"""Tests for bio.console: every bioalbert-* command names a real module and
runs it as `python -m` would."""
import importlib.util
import os
import subprocess
import sys

import pytest

from bio import console

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_every_command_names_a_module():
  for name, module in console.COMMANDS.items():
    assert name.startswith("bioalbert-")
    assert importlib.util.find_spec(module) is not None, module
    assert callable(getattr(console, name.replace("-", "_")))


def test_entry_points_match_the_table():
  lines = console.entry_points()
  assert len(lines) == len(console.COMMANDS)
  for line in lines:
    name, target = [part.strip() for part in line.split("=")]
    assert target == "bio.console:" + name.replace("-", "_")


def _run(code, *args):
  return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_command_runs_the_module_with_its_arguments(tmp_path):
  """A bad flag value reaches the tool: the train_spm CLI reports it."""
  proc = _run("import sys; from bio import console; "
              "sys.argv = ['bioalbert-train-spm'] + sys.argv[1:]; "
              "console.bioalbert_train_spm()",
              "--input=" + str(tmp_path / "missing-*.txt"),
              "--model_prefix=" + str(tmp_path / "spm"))
  assert proc.returncode != 0
  assert "missing-*.txt" in proc.stderr
  assert not os.listdir(tmp_path)


def test_installed_script_when_present():
  script = os.path.join(os.path.dirname(sys.executable), "bioalbert-tag")
  if not os.path.exists(script):
    pytest.skip("bioalbert-* scripts are not installed in this environment "
                "(pip install -e . installs them)")
  proc = subprocess.run([script, "--help"], capture_output=True, text=True,
                        timeout=300)
  # absl's --help exits 1, as `python -m bio.serving.tag --help` does.
  assert "--saved_model" in proc.stdout + proc.stderr
