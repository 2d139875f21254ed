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


@pytest.fixture(scope="session")
def spm_model_file(pubmed_dir, tmp_path_factory):
  """A 1000-piece lower-cased SentencePiece model trained on the ~600
  abstracts of the two PubMed samples (about 2 s)."""
  import gzip
  import xml.etree.ElementTree as ET
  from albert import train_spm
  texts = []
  for name in ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz"):
    with gzip.open(os.path.join(pubmed_dir, name)) as f:
      root = ET.parse(f).getroot()
    texts.extend("".join(node.itertext()) for node in root.iter()
                 if node.tag in ("ArticleTitle", "AbstractText"))
  prefix = str(tmp_path_factory.mktemp("spm") / "bio1k")
  return train_spm.train_sentencepiece_from_texts(texts, prefix,
                                                  vocab_size=1000)
