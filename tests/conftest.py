"""Shared fixtures: the real data directory (tests skip when it is absent)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from bio import paths  # pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def shared_data_dir():
  path = paths.default_data_dir()
  if not path or not os.path.isdir(path):
    pytest.skip("shared data not found: set $%s or put it at ../shared/data"
                % paths.ENV_VAR)
  return path


@pytest.fixture(scope="session")
def pubmed_dir(shared_data_dir):
  return os.path.join(shared_data_dir, "pubmed")


@pytest.fixture(scope="session")
def ner_dir(shared_data_dir):
  return os.path.join(shared_data_dir, "ner")
