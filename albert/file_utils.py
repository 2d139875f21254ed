"""File handling shared by every tool (any tf.io.gfile filesystem, gs://
too): input globs, atomic writes of files and directories, checkpoint
resolution and copies.

Atomic here means a reader never sees a half-written output: bytes go to a
hidden temporary name beside the target (`temp_path`), which is renamed into
place only when complete, and removed if writing fails. On local disks the
rename is atomic; on object stores it is a copy of a finished file.
"""
import contextlib
import json
import os
import shutil
import socket
import stat
import tempfile
import uuid

from absl import logging


class LazyTensorFlow(object):
  """tensorflow.compat.v1, imported on first use: tools that only touch
  local files (bio.corpus), or refuse bad flags, should not pay TF's
  seconds of start-up."""

  def __getattr__(self, name):
    import tensorflow.compat.v1 as tf_v1  # pylint: disable=g-import-not-at-top
    return getattr(tf_v1, name)


tf = LazyTensorFlow()


def expand_globs(patterns, error_cls=ValueError, what="input"):
  """Sorted matches of each pattern, in pattern order.

  Args:
    patterns: a comma-separated string, or a list, of paths or globs (any
      tf.io.gfile filesystem, e.g. gs://).
    error_cls: raised for no pattern at all, or for a pattern that matches
      nothing (almost always a typo; silently using fewer files is worse).
    what: how messages name the list, e.g. "--input_file".
  """
  if isinstance(patterns, str):
    patterns = patterns.split(",")
  patterns = [p.strip() for p in patterns or () if p and p.strip()]
  if not patterns:
    raise error_cls("%s is empty: no file given" % what)
  paths = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise error_cls("%s pattern %r matches no file" % (what, pattern))
    paths.extend(matched)
  return paths


def is_local(path):
  """Whether `path` is on the local filesystem (no URL scheme)."""
  return "://" not in path or path.startswith("file://")


def _is_plain_local(path):
  """A local path that os functions take as is (not file://)."""
  return "://" not in path


def temp_path(path):
  """A hidden, unique sibling of `path` (globs of outputs do not match it)."""
  directory, name = os.path.split(path)
  return os.path.join(directory, ".%s.tmp-%d-%s" % (
      name, os.getpid(), uuid.uuid4().hex[:8]))


def is_temp_name(name):
  """Whether a file name was made by `temp_path`."""
  return name.startswith(".") and ".tmp-" in name


def remove_quietly(path):
  """Removes a file if it exists; never raises (for clean-up paths)."""
  if _is_plain_local(path):
    try:
      os.remove(path)
    except OSError:
      pass
    return
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except tf.errors.OpError:
    pass


def _publish_mode(path):
  """Local temporaries from mkstemp are owner-only; give them the mode a
  plain open() would."""
  if is_local(path) and os.path.exists(path):
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_file(path, mode="w", fsync=False):
  """Yields a file open for writing at a temporary name; on success renames
  it to `path`, on any exception removes it and re-raises. With `fsync`, a
  local file's bytes reach the disk before the rename (durable on a crash)."""
  tmp = temp_path(path)
  try:
    with _open_for_write(tmp, mode) as f:
      yield f
    if fsync and _is_plain_local(tmp):
      _fsync(tmp)
    _publish_mode(tmp)
    _rename_into_place(tmp, path)
  finally:
    remove_quietly(tmp)


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path to write (for writers that take a path, such
  as tf.io.TFRecordWriter); on success renames it to `path`, on any
  exception removes it and re-raises."""
  tmp = temp_path(path)
  try:
    yield tmp
    _rename_into_place(tmp, path)
  finally:
    remove_quietly(tmp)


def _rename_into_place(tmp, path):
  if _is_plain_local(path):
    os.replace(tmp, path)
  else:
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _open_for_write(path, mode):
  """Local files through open() (as GFile: UTF-8, newlines untranslated),
  others through tf.io.gfile."""
  if not _is_plain_local(path):
    return tf.io.gfile.GFile(path, mode)
  if "b" in mode:
    return open(path, mode)
  return open(path, mode, encoding="utf-8", newline="")


def _fsync(path):
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write(path, data, fsync=False):
  """Writes `data` (str or bytes) to `path` atomically."""
  with atomic_file(path, "wb" if isinstance(data, bytes) else "w",
                   fsync=fsync) as f:
    f.write(data)


def atomic_write_json(path, obj, indent=2, sort_keys=False, fsync=False):
  """Writes `obj` as JSON (plus a final newline) to `path` atomically."""
  atomic_write(path, json.dumps(obj, indent=indent, sort_keys=sort_keys,
                                ensure_ascii=False, default=float) + "\n",
               fsync=fsync)


@contextlib.contextmanager
def atomic_dir(path):
  """Yields a local temporary directory to fill; on success it becomes
  `path`, which must not exist yet (callers decide what may be replaced).

  Local targets are renamed into place; remote ones (gs://, ...) are copied
  file by file through tf.io.gfile under temporary names, the top-level
  files last, so a reader that waits for e.g. saved_model.pb sees a whole
  directory. On failure nothing is left at `path`.
  """
  if (os.path.lexists(path) if _is_plain_local(path) else
      tf.io.gfile.exists(path)):
    raise FileExistsError("%s already exists" % path)
  if is_local(path):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = scratch_dir(".%s.tmp-" % os.path.basename(path), parent)
  else:
    # Its own prefix: no other scratch_dir prefix may begin with it.
    tmp = scratch_dir("bioalbert-upload-")
  try:
    yield tmp
    if is_local(path):
      _publish_mode_dir(tmp)
      os.rename(tmp, path)
    else:
      copy_tree(tmp, path)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)


def scratch_dir(prefix, parent=None):
  """A new directory "<prefix><host>-<pid>-<random>" in `parent` (the
  system's temporary directory by default), for the caller to remove.

  Directories of the same prefix whose process was killed on this host
  (kill -9, out of memory: no clean-up ran) are removed first, so re-runs
  do not pile them up. Those of live processes, other hosts and other
  users are kept.
  """
  parent = parent or tempfile.gettempdir()
  host = _hostname()
  for name in os.listdir(parent):
    owner = _scratch_owner(name, prefix)
    if owner is None or owner[0] != host or _alive(*owner):
      continue
    path = os.path.join(parent, name)
    try:
      info = os.lstat(path)  # a symlink is not a directory here
    except OSError:  # another run removed it first
      continue
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
      continue
    logging.info("Removing %s, left by process %d, which is gone.", path,
                 owner[1])
    shutil.rmtree(path, ignore_errors=True)
  return tempfile.mkdtemp(prefix="%s%s-%d-" % (prefix, host, os.getpid()),
                          dir=parent)


def _scratch_owner(name, prefix):
  """(host, pid) from a `scratch_dir` name of `prefix`, else None."""
  if not name.startswith(prefix):
    return None
  # The random part of mkdtemp names has no "-"; host names may.
  owner, _, _ = name[len(prefix):].rpartition("-")
  host, _, pid = owner.rpartition("-")
  if not host or not pid.isdigit():
    return None
  return host, int(pid)


def _publish_mode_dir(path):
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o777 & ~umask)


def copy_tree(local_dir, target):
  """Copies a local directory to any tf.io.gfile path, each file through a
  temporary name; subdirectories first, top-level files last."""
  tf.io.gfile.makedirs(target)
  top_files = []
  for root, _, names in os.walk(local_dir):
    rel = os.path.relpath(root, local_dir)
    dest_dir = target if rel == "." else "/".join([target.rstrip("/"),
                                                   rel.replace(os.sep, "/")])
    tf.io.gfile.makedirs(dest_dir)
    for name in names:
      item = (os.path.join(root, name), dest_dir.rstrip("/") + "/" + name)
      if rel == ".":
        top_files.append(item)
      else:
        _copy_file(*item)
  for item in top_files:
    _copy_file(*item)


def _copy_file(src, dst):
  tmp = temp_path(dst)
  try:
    tf.io.gfile.copy(src, tmp, overwrite=True)
    tf.io.gfile.rename(tmp, dst, overwrite=True)
  finally:
    remove_quietly(tmp)


def resolve_checkpoint(path, what="--init_checkpoint", error_cls=ValueError):
  """A checkpoint prefix from a prefix or a directory of checkpoints.

  A directory gives its latest checkpoint (per its `checkpoint` file, else
  the highest step of its `*.index` files). Raises `error_cls` naming `what`
  and the path when there is none.
  """
  if not path:
    raise error_cls("%s is empty: give a checkpoint prefix or directory"
                    % what)
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if not latest:
      indexes = tf.io.gfile.glob(os.path.join(path, "*.index"))
      if len(indexes) == 1:
        latest = indexes[0][:-len(".index")]
    if not latest:
      raise error_cls("%s %s: the directory holds no checkpoint (no "
                      "*.index file)" % (what, path))
    return latest
  if not tf.io.gfile.exists(path + ".index"):
    raise error_cls("%s %s: no such checkpoint (%s.index not found; give "
                    "the prefix, e.g. model.ckpt-1000, or its directory)"
                    % (what, path, path))
  return path


def checkpoint_shape_problems(checkpoint_path, expected):
  """The variables of `expected` {name: shape list} that a checkpoint lacks
  or holds with another shape, in name order: a list of (name, checkpoint
  shape or None when missing, expected shape). Extra checkpoint variables
  are fine. Callers decide which problems are errors and word them.
  """
  saved = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
  problems = []
  for name, shape in sorted(expected.items()):
    found = list(saved[name]) if name in saved else None
    if found != list(shape):
      problems.append((name, found, list(shape)))
  return problems


def copy_checkpoint(prefix, target_prefix):
  """Copies the files of checkpoint `prefix` to `target_prefix`, each through
  a temporary name; returns the paths written."""
  copied = []
  for src in tf.io.gfile.glob(prefix + ".*"):
    ext = src[len(prefix):]
    if ".tmp-" in ext:
      continue
    dst = target_prefix + ext
    _copy_file(src, dst)
    copied.append(dst)
  return copied


LOCK_FILE = ".lock"


class DirLockedError(RuntimeError):
  """Another live process holds the output directory's lock."""


class DirLock(object):
  """An exclusive lock on an output directory for the life of a run.

  The lock is a file `<dir>/.lock` holding "host pid", created with
  O_EXCL so two runs cannot both take it. A lock left by a process that is
  no longer alive on this host is taken over with a warning. Remote
  directories (gs://) are not locked: object stores have no exclusive
  create through tf.io.gfile, and TPU jobs coordinate there by job name.

    with file_utils.DirLock(output_dir):
      train(...)
  """

  def __init__(self, directory, warn=None):
    self.directory = directory
    self.path = os.path.join(directory, LOCK_FILE)
    self._warn = warn or (lambda msg: None)
    self._held = False

  def __enter__(self):
    if not is_local(self.directory):
      return self
    os.makedirs(self.directory, exist_ok=True)
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        owner = self._owner()
        if owner is not None and _alive(*owner):
          raise DirLockedError(
              "%s is in use by another run (pid %d on %s, lock file %s): wait "
              "for it to finish or use another output directory"
              % (self.directory, owner[1], owner[0], self.path))
        self._warn("taking over the stale lock %s (its process is gone)"
                   % self.path)
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
        continue
      with os.fdopen(fd, "w") as f:
        f.write("%s %d\n" % (_hostname(), os.getpid()))
      self._held = True
      return self
    raise DirLockedError("could not take the lock %s" % self.path)

  def _owner(self):
    try:
      with open(self.path) as f:
        host, pid = f.read().split()
      return host, int(pid)
    except (OSError, ValueError):
      return None

  def __exit__(self, *unused):
    if self._held:
      self._held = False
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass


def lock_holder(directory):
  """(host, pid) of another live process holding `directory`'s DirLock, or
  None (no lock, a stale one, or this process's own)."""
  if not is_local(directory):
    return None
  try:
    with open(os.path.join(directory, LOCK_FILE)) as f:
      host, pid = f.read().split()
    owner = (host, int(pid))
  except (OSError, ValueError):
    return None
  if owner == (_hostname(), os.getpid()) or not _alive(*owner):
    return None
  return owner


def _hostname():
  return socket.gethostname()


def _alive(host, pid):
  """Whether `pid` runs; a lock from another host counts as alive."""
  if host != _hostname():
    return True
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True
