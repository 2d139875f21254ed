"""Fixtures shared by tests/bio/serving and tests/bio/beam: the tiny
random-weight NER SavedModel (built by tests/bio/serving/conftest.py's
`build_tiny_ner_export`) and its loaded tagger, each made once per session.
"""
import importlib.util
import os

import pytest


def _serving_conftest():
  """tests/bio/serving/conftest.py as a module (conftest files cannot be
  imported by name)."""
  spec = importlib.util.spec_from_file_location(
      "serving_conftest_helpers",
      os.path.join(os.path.dirname(__file__), "serving", "conftest.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="session")
def tag_export(spm_model_file, tmp_path_factory):
  """The tiny NER SavedModel directory."""
  return _serving_conftest().build_tiny_ner_export(
      str(tmp_path_factory.mktemp("tag_model")), spm_model_file)


@pytest.fixture(scope="session")
def tagger(tag_export):
  """bio.serving.tag.load_model of the tiny export (loaded once)."""
  from bio.serving import tag  # pylint: disable=g-import-not-at-top
  return tag.load_model(tag_export)
