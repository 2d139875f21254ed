"""File lists of the scripts: comma-separated globs, each matching something."""
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
