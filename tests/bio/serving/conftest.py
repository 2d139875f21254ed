"""Fixtures of the tagging tests; the builders are in tests/bio/tiny_ner.py
and the session-wide export and tagger in tests/bio/conftest.py."""
import pytest

from tests.bio import tiny_ner


@pytest.fixture(scope="session")
def random_ner_run():
  """`tiny_ner.write_random_ner_run`, as a fixture."""
  return tiny_ner.write_random_ner_run


@pytest.fixture(scope="session")
def cached_tagger(tagger):
  """A `CachedTagger` of the session's tagger: the format and resume tests
  tag the same shared files, and what a text gets is all they check."""
  return tiny_ner.CachedTagger(tagger)
