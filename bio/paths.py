"""Where data is read and derived data is cached: the one place that knows
both environment variables.

Data: a flag, then $BIOALBERT_DATA_DIR, then ../shared/data beside the
checkout. Cache (converted datasets such as BC4CHEMD): $BIOALBERT_CACHE_DIR,
then ~/.cache/bioalbert.
"""
import os

ENV_VAR = "BIOALBERT_DATA_DIR"
CACHE_ENV_VAR = "BIOALBERT_CACHE_DIR"
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_data_dir():
  """The data directory from the environment or beside the checkout, or None."""
  env = os.environ.get(ENV_VAR)
  if env:
    return env
  candidate = os.path.join(os.path.dirname(_PROJECT_ROOT), "shared", "data")
  return candidate if os.path.isdir(candidate) else None


def resolve_data_dir(flag_value=None):
  """`flag_value` if given, else the default; raises if none can be found."""
  path = flag_value or default_data_dir()
  if not path:
    raise FileNotFoundError(
        "No data directory: pass a --data_dir flag, set $%s, or place the data "
        "in ../shared/data beside the project." % ENV_VAR)
  if not os.path.isdir(path):
    raise FileNotFoundError("Data directory does not exist: %s" % path)
  return path


def default_cache_dir():
  """$BIOALBERT_CACHE_DIR, else ~/.cache/bioalbert."""
  return os.environ.get(CACHE_ENV_VAR) or os.path.join(
      os.path.expanduser("~"), ".cache", "bioalbert")
