"""albert.train_spm: errors a user can make are one line, never a trace."""
import os
import subprocess
import sys

import pytest

from albert import train_spm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_output_prefix_that_cannot_be_made_is_a_clear_error(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("mine")
  prefix = str(blocker / "sub" / "m")
  with pytest.raises(ValueError, match="cannot create directory"):
    train_spm.train_sentencepiece_from_texts(["some text"], prefix, 10)
  text = tmp_path / "t.txt"
  text.write_text("hello world line\n")
  proc = subprocess.run(
      [sys.executable, "-m", "albert.train_spm", "--input=%s" % text,
       "--model_prefix=" + prefix, "--vocab_size=10"], cwd=ROOT,
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert "--model_prefix %s: cannot create directory" % prefix in proc.stderr
  assert blocker.read_text() == "mine"
