"""File handling shared by the scripts (any tf.io.gfile filesystem, gs:// too):
input globs, atomic text writes, checkpoint copies."""
import os

import tensorflow.compat.v1 as tf


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


def atomic_write(path, text):
  """Writes `text` under a temporary name beside `path`, then renames it, so
  a reader never sees a half-written file (atomic on local disks)."""
  tmp = "%s.tmp-%d" % (path, os.getpid())
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def copy_checkpoint(prefix, target_prefix):
  """Copies the files of checkpoint `prefix` to `target_prefix`, each through
  a temporary name; returns the paths written."""
  copied = []
  for src in tf.io.gfile.glob(prefix + ".*"):
    ext = src[len(prefix):]
    if ".tmp-" in ext:
      continue
    dst = target_prefix + ext
    tmp = "%s.tmp-%d" % (dst, os.getpid())
    tf.io.gfile.copy(src, tmp, overwrite=True)
    tf.io.gfile.rename(tmp, dst, overwrite=True)
    copied.append(dst)
  return copied
