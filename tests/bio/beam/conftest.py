"""Fixtures of the Beam tests: PubMed inputs with crafted updates, and the
corpus both preparation commands make of them (computed once per session,
shared by test_prepare_corpus and test_create_pretraining_data)."""
import copy
import gzip
import os
import xml.etree.ElementTree as ET

import pytest

RUNNER = ["--runner=FnApiRunner"]


def _settings(source, inputs, output_dir, **overrides):
  """Settings both commands accept (bio.corpus.prepare's keys)."""
  from bio.corpus import prepare  # pylint: disable=g-import-not-at-top
  return prepare.default_settings(
      source, inputs, output_dir, **dict(
          dict(shard_docs=10, shard_bytes=0, unit_bytes=1 << 20,
               progress_secs=600), **overrides))


@pytest.fixture(scope="session")
def beam_settings():
  """f(source, inputs, output_dir, **overrides) -> small-shard settings."""
  return _settings


def _revised(article, label):
  article = copy.deepcopy(article)
  title = article.find("MedlineCitation/Article/ArticleTitle")
  title.text = "%s revision of: %s" % (label, "".join(title.itertext()))
  for child in list(title):
    title.remove(child)
  return article


def _pmid(article):
  return int(article.findtext("MedlineCitation/PMID"))


def _deletion(*pmids):
  elem = ET.Element("DeleteCitation")
  for pmid in pmids:
    ET.SubElement(elem, "PMID", Version="1").text = str(pmid)
  return elem


def _write_set(path, elements):
  root = ET.Element("PubmedArticleSet")
  root.extend(elements)
  with gzip.open(path, "wb") as f:
    f.write(ET.tostring(root, encoding="utf-8"))


@pytest.fixture(scope="session")
def pubmed_update_inputs(pubmed_dir, tmp_path_factory):
  """The shared baseline cut and update file, plus a crafted later update
  that revises, deletes, re-adds and duplicates some of their PMIDs."""
  baseline = os.path.join(pubmed_dir, "pubmed26n1334.xml.gz")
  update = os.path.join(pubmed_dir, "updates", "pubmed26n1335.xml.gz")
  with gzip.open(baseline) as f:
    # Records with an abstract, so that each revision is a document.
    base = [e for e in ET.parse(f).getroot() if e.tag == "PubmedArticle" and
            e.findtext("MedlineCitation/Article/Abstract/AbstractText")]
  with gzip.open(update) as f:
    upd = [e for e in ET.parse(f).getroot() if e.tag == "PubmedArticle"]
  no_abstract = _revised(base[3], "Abstract-less")
  article = no_abstract.find("MedlineCitation/Article")
  article.remove(article.find("Abstract"))
  crafted = [
      _deletion(_pmid(upd[0]), _pmid(base[1])),  # deleted; re-added below
      _revised(base[0], "First"),
      _revised(base[1], "Re-added"),
      _revised(base[2], "Early"),  # superseded again in this same file
      no_abstract,                 # drops base[3], then has no abstract
      _revised(base[2], "Late"),
      _deletion(_pmid(upd[1]), 999999999),  # the latter was never there
  ]
  work = tmp_path_factory.mktemp("pubmed_updates")
  later = str(work / "pubmed26n1336.xml.gz")
  _write_set(later, crafted)
  return [baseline, update, later]


@pytest.fixture(scope="session")
def corpus_runs(pubmed_update_inputs, tmp_path_factory):
  """The same inputs through bio.corpus.prepare and the Beam pipeline."""
  pytest.importorskip("apache_beam")
  from bio.beam import prepare_corpus  # pylint: disable=g-import-not-at-top
  from bio.corpus import prepare  # pylint: disable=g-import-not-at-top
  work = tmp_path_factory.mktemp("corpus")
  inputs = ",".join(pubmed_update_inputs)
  single_dir = str(work / "single")
  beam_dir = str(work / "beam")
  single = prepare.run(_settings("pubmed", inputs, single_dir),
                       report=lambda msg: None)
  manifest, counters = prepare_corpus.run(
      _settings("pubmed", inputs, beam_dir), RUNNER)
  return {"single": (single_dir, single), "beam": (beam_dir, manifest),
          "counters": counters, "inputs": pubmed_update_inputs}


@pytest.fixture(scope="session")
def corpus_documents():
  """f(output_dir, manifest) -> every document of a corpus output, as a
  tuple of its sentences."""

  def documents(output_dir, manifest):
    docs = []
    for shard in manifest["shards"]:
      with open(os.path.join(output_dir, shard["file"]),
                encoding="utf-8") as f:
        for block in f.read().split("\n\n"):
          if block.strip():
            docs.append(tuple(block.strip("\n").split("\n")))
    return docs

  return documents
