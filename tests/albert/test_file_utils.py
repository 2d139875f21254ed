"""Tests for albert/file_utils.py."""
import json
import os
import socket
import subprocess
import sys

import pytest
import tensorflow.compat.v1 as tf

from albert import file_utils

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_atomic_file_keeps_old_target_and_no_temp_on_error(tmp_path):
  target = tmp_path / "out.txt"
  target.write_text("old")
  with pytest.raises(RuntimeError):
    with file_utils.atomic_file(str(target)) as f:
      f.write("half")
      raise RuntimeError("boom")
  assert target.read_text() == "old"
  assert os.listdir(tmp_path) == ["out.txt"]
  file_utils.atomic_write(str(target), "new")
  assert target.read_text() == "new"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_renames_on_success_and_cleans_on_error(tmp_path):
  target = str(tmp_path / "data.tfrecord")
  with pytest.raises(RuntimeError):
    with file_utils.atomic_path(target) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("boom")
  assert os.listdir(tmp_path) == []
  with file_utils.atomic_path(target) as tmp:
    assert tmp != target
    with open(tmp, "w") as f:
      f.write("whole")
    assert not os.path.exists(target)
  assert os.listdir(tmp_path) == ["data.tfrecord"]
  with open(target) as f:
    assert f.read() == "whole"


def test_atomic_write_json(tmp_path):
  path = str(tmp_path / "a.json")
  file_utils.atomic_write_json(path, {"b": 1, "a": "é"}, sort_keys=True)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert text.endswith("}\n") and json.loads(text) == {"a": "é", "b": 1}
  assert text.index('"a"') < text.index('"b"')


@pytest.mark.parametrize("remote", [False, True])
def test_atomic_dir(tmp_path, remote):
  target = ("ram://atomic_dir_test/out" if remote else str(tmp_path / "out"))
  with file_utils.atomic_dir(target) as tmp:
    os.makedirs(os.path.join(tmp, "sub"))
    with open(os.path.join(tmp, "sub", "x.txt"), "w") as f:
      f.write("x")
    with open(os.path.join(tmp, "top.txt"), "w") as f:
      f.write("top")
  with tf.io.gfile.GFile(target + "/sub/x.txt") as f:
    assert f.read() == "x"
  assert sorted(tf.io.gfile.listdir(target)) in (
      ["sub", "top.txt"], ["sub/", "top.txt"])
  with pytest.raises(FileExistsError):
    with file_utils.atomic_dir(target):
      pass
  failed = target + "-failed"
  with pytest.raises(RuntimeError):
    with file_utils.atomic_dir(failed) as tmp:
      raise RuntimeError("boom")
  assert not tf.io.gfile.exists(failed) and not os.path.exists(tmp)


def test_copy_tree(tmp_path):
  src = tmp_path / "src"
  (src / "a" / "b").mkdir(parents=True)
  (src / "a" / "b" / "deep.txt").write_text("deep")
  (src / "top.txt").write_text("top")
  file_utils.copy_tree(str(src), str(tmp_path / "dst"))
  assert (tmp_path / "dst" / "a" / "b" / "deep.txt").read_text() == "deep"
  assert (tmp_path / "dst" / "top.txt").read_text() == "top"
  assert not [n for _, _, names in os.walk(tmp_path / "dst") for n in names
              if file_utils.is_temp_name(n)]


def test_resolve_checkpoint(tmp_path):
  for step in (5, 10):
    (tmp_path / ("model.ckpt-%d.index" % step)).write_bytes(b"")
  prefix = str(tmp_path / "model.ckpt-5")
  assert file_utils.resolve_checkpoint(prefix) == prefix
  with open(tmp_path / "checkpoint", "w") as f:
    f.write('model_checkpoint_path: "model.ckpt-10"\n')
  assert file_utils.resolve_checkpoint(str(tmp_path)) == str(
      tmp_path / "model.ckpt-10")
  with pytest.raises(KeyError, match=r"--init_checkpoint .*ckpt-7: no such "
                     r"checkpoint \(.*ckpt-7.index not found"):
    file_utils.resolve_checkpoint(str(tmp_path / "model.ckpt-7"),
                                  error_cls=KeyError)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="holds no checkpoint"):
    file_utils.resolve_checkpoint(str(empty))


def test_checkpoint_shape_problems(tmp_path):
  with tf.Graph().as_default():
    tf.get_variable("a/kernel", [2, 3])
    tf.get_variable("b", [4])
    tf.get_variable("extra", [1])
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
  assert file_utils.checkpoint_shape_problems(
      prefix, {"a/kernel": [2, 3], "b": [4]}) == []
  assert file_utils.checkpoint_shape_problems(
      prefix, {"a/kernel": [2, 3], "b": [5], "c": [1], "0": [2]}) == [
          ("0", None, [2]), ("b", [4], [5]), ("c", None, [1])]


_HOLD = """
import sys, time
from albert import file_utils
with file_utils.DirLock(sys.argv[1]):
  print("held", flush=True)
  sys.stdin.readline()
"""


def test_dir_lock_other_process_and_stale_lock(tmp_path):
  directory = str(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, "-c", _HOLD, directory],
                            cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(file_utils.DirLockedError,
                       match="in use by another run \\(pid %d" % holder.pid):
      with file_utils.DirLock(directory):
        pass
    assert file_utils.lock_holder(directory) == (socket.gethostname(),
                                                 holder.pid)
  finally:
    holder.communicate("\n", timeout=60)
  assert file_utils.lock_holder(directory) is None
  # A lock left by a dead process is taken over, with a warning.
  with open(os.path.join(directory, ".lock"), "w") as f:
    f.write("%s %d\n" % (socket.gethostname(), holder.pid))
  warnings = []
  with file_utils.DirLock(directory, warn=warnings.append):
    assert file_utils.lock_holder(directory) is None  # our own
  assert len(warnings) == 1 and "stale lock" in warnings[0]
  assert not os.path.exists(os.path.join(directory, ".lock"))


def test_scratch_dir_removes_only_what_a_killed_process_left(tmp_path,
                                                            dead_pid):
  host, dead = socket.gethostname(), dead_pid
  names = {
      "killed": "job-%s-%d-abc123" % (host, dead),
      "alive": "job-%s-%d-def456" % (host, os.getpid()),
      "other host": "job-elsewhere-%d-abc123" % dead,
      "other prefix": "user-%s-%d-abc123" % (host, dead),
      "no owner": "job-abc123",
      # temp_path's name (pid, no host): export_to_tfhub's previous export
      # put aside during --overwrite, which a kill leaves for the user.
      "set aside": "job-%d-abc12345" % dead,
  }
  if os.getuid() == 0:  # only root can hand a directory to another user
    names["other user"] = "job-%s-%d-ghi789" % (host, dead)
  for name in names.values():
    os.makedirs(str(tmp_path / name / "inside"))
  if "other user" in names:
    os.chown(str(tmp_path / names["other user"]), os.getuid() + 1, -1)
  (tmp_path / ("job-%s-%d-file" % (host, dead))).write_text("not a dir")
  made = file_utils.scratch_dir("job-", str(tmp_path))
  assert os.path.basename(made).startswith("job-%s-%d-" % (host, os.getpid()))
  assert sorted(os.listdir(str(tmp_path))) == sorted(
      [n for k, n in names.items() if k != "killed"] +
      ["job-%s-%d-file" % (host, dead), os.path.basename(made)])


_KILLED_IN_ATOMIC_DIR = """
import os, signal, sys
from albert import file_utils
with file_utils.atomic_dir(sys.argv[1]) as tmp:
  open(os.path.join(tmp, "half"), "w").close()
  os.kill(os.getpid(), signal.SIGKILL)
"""


def test_atomic_dir_after_a_kill_leaves_no_temporary_behind(tmp_path):
  target = str(tmp_path / "export")
  proc = subprocess.run([sys.executable, "-c", _KILLED_IN_ATOMIC_DIR, target],
                        cwd=ROOT, timeout=120)
  assert proc.returncode == -9
  left = os.listdir(str(tmp_path))
  assert len(left) == 1 and left[0].startswith(".export.tmp-")
  with file_utils.atomic_dir(target) as tmp:
    open(os.path.join(tmp, "whole"), "w").close()
  assert os.listdir(str(tmp_path)) == ["export"]
  assert os.listdir(target) == ["whole"]
