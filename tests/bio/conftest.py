"""Fixtures shared by tests/bio/serving and tests/bio/beam: the tiny
random-weight NER SavedModel (`tiny_ner.build_tiny_ner_export`) and its
loaded tagger, each made once per session."""
import pytest

from tests.bio import tiny_ner


@pytest.fixture(scope="session")
def tag_export(spm_model_file, tmp_path_factory):
  """The tiny NER SavedModel directory."""
  return tiny_ner.build_tiny_ner_export(
      str(tmp_path_factory.mktemp("tag_model")), spm_model_file)


@pytest.fixture(scope="session")
def tagger(tag_export):
  """bio.serving.tag.load_model of the tiny export (loaded once)."""
  from bio.serving import tag  # pylint: disable=g-import-not-at-top
  return tag.load_model(tag_export)
