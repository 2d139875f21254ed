"""PubMed reader (bio.corpus.pubmed) and the PubMed corpus run on the real samples."""
import collections
import glob
import gzip
import os
import tracemalloc
import xml.sax
import xml.sax.handler

import pytest

from bio.corpus import prepare
from bio.corpus import pubmed

MIN_CHARS = 20


def _norm(text):
  return " ".join(text.split())


class _ExpectedHandler(xml.sax.handler.ContentHandler):
  """Collects PMID, ArticleTitle and Abstract/AbstractText with SAX."""

  def __init__(self):
    super().__init__()
    self.path = []
    self.articles = collections.OrderedDict()
    self.deleted = []
    self.text = None

  def startElement(self, name, attrs):
    self.path.append(name)
    if self.path[-3:] in (["MedlineCitation", "Article", "ArticleTitle"],
                          ["Article", "Abstract", "AbstractText"]) or (
                              self.path[-2:] == ["MedlineCitation", "PMID"]
                              or self.path[-2:] == ["DeleteCitation",
                                                    "PMID"]):
      self.text = []
    if name == "PubmedArticle":
      self.current = [None, "", []]

  def characters(self, content):
    if self.text is not None:
      self.text.append(content)

  def endElement(self, name):
    if self.text is not None and name in ("PMID", "ArticleTitle",
                                          "AbstractText"):
      text = _norm("".join(self.text))
      self.text = None
      if self.path[-2] == "DeleteCitation":
        self.deleted.append(int(text))
      elif name == "PMID":
        self.current[0] = int(text)
      elif name == "ArticleTitle":
        self.current[1] = text
      elif text:
        self.current[2].append(text)
    if name == "PubmedArticle":
      self.articles[self.current[0]] = (self.current[1], self.current[2])
    self.path.pop()


def _parse_expected(path):
  handler = _ExpectedHandler()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    xml.sax.parse(f, handler)
  return handler


def _expected_articles(path):
  """PMID -> (title, [abstract sections]), parsed independently with SAX."""
  return _parse_expected(path).articles


def _expected_document(title, sections):
  kept = [line for line in [title] + sections if len(line) >= MIN_CHARS]
  return " ".join(kept)


def _read_documents(output_dir):
  """Documents of every shard, read as create_pretraining_data reads them."""
  docs = []
  for path in sorted(glob.glob(os.path.join(output_dir, "*.txt"))):
    current = []
    with open(path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if not line:
          if current:
            docs.append(current)
          current = []
        else:
          current.append(line)
    if current:
      docs.append(current)
  return docs


def _pubmed_files(pubmed_dir):
  return sorted(glob.glob(os.path.join(pubmed_dir, "**", "*.xml.gz"),
                          recursive=True))


def _settings(input_glob, output_dir, **overrides):
  return prepare.default_settings(
      "pubmed", input_glob, output_dir, **dict(
          dict(shard_bytes=0, min_line_chars=MIN_CHARS, unit_bytes=1 << 20,
               progress_secs=60), **overrides))


@pytest.fixture(scope="module")
def pubmed_run(pubmed_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("pubmed_out"))
  manifest = prepare.run(
      _settings(os.path.join(pubmed_dir, "**", "*.xml.gz"), out),
      report=lambda msg: None)
  return out, manifest


def test_every_article_with_abstract_is_exactly_one_document(pubmed_dir,
                                                             pubmed_run):
  out, manifest = pubmed_run
  expected = collections.Counter()
  no_abstract = 0
  for path in _pubmed_files(pubmed_dir):
    for title, sections in _expected_articles(path).values():
      if not sections:
        no_abstract += 1
        continue
      expected[_expected_document(title, sections)] += 1
  got = collections.Counter(" ".join(doc) for doc in _read_documents(out))
  assert sum(expected.values()) > 600
  assert got == expected
  assert manifest["totals"]["documents"] == sum(expected.values())
  assert manifest["totals"]["skipped"] == {"no_abstract": no_abstract}
  assert no_abstract == 5
  assert manifest["errors"] == []


def test_manifest_counts_match_the_shards(pubmed_run):
  out, manifest = pubmed_run
  for shard in manifest["shards"]:
    docs = _read_documents_of(os.path.join(out, shard["file"]))
    assert shard["documents"] == len(docs)
    assert shard["sentences"] == sum(len(d) for d in docs)
    assert shard["words"] == sum(len(s.split()) for d in docs for s in d)
    assert shard["bytes"] == os.path.getsize(os.path.join(out,
                                                          shard["file"]))
    assert len(shard["sources"]) == 1
  assert len(manifest["shards"]) == 5


def _read_documents_of(path):
  with open(path, encoding="utf-8") as f:
    text = f.read()
  # One sentence per line, exactly one blank line after each document.
  assert not text.startswith("\n") and text.endswith("\n\n")
  assert "\n\n\n" not in text
  return [block.split("\n") for block in text[:-2].split("\n\n")]


def test_structured_abstract_labels_are_optional(pubmed_dir):
  path = os.path.join(pubmed_dir, "updates", "pubmed26n1335.xml.gz")
  article = next(pubmed.read_file(path))
  assert [label for label, _ in article.sections] == [
      "BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
  plain = pubmed.article_blocks(article)
  labelled = pubmed.article_blocks(article, include_labels=True)
  assert plain[0] == labelled[0] == article.title
  assert plain[1].startswith("Although migration")
  assert labelled[1] == "BACKGROUND: " + plain[1]
  assert labelled[4] == "CONCLUSIONS: " + plain[4]


# ------------------------------------------------------ update semantics ---

def _write_set(path, records, deletions=(), gz=False):
  body = "".join(records)
  if deletions:
    body += "<DeleteCitation>%s</DeleteCitation>" % "".join(
        '<PMID Version="1">%d</PMID>' % p for p in deletions)
  data = ('<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>%s'
          "</PubmedArticleSet>\n" % body).encode("utf-8")
  with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
    f.write(data)
  return str(path)


def _record(pmid, title, *sections):
  abstract = ""
  if sections:
    abstract = "<Abstract>%s</Abstract>" % "".join(
        "<AbstractText>%s</AbstractText>" % s for s in sections)
  return ('<PubmedArticle><MedlineCitation><PMID Version="1">%d</PMID>'
          "<Article><ArticleTitle>%s</ArticleTitle>%s</Article>"
          "</MedlineCitation></PubmedArticle>" % (pmid, title, abstract))


def _final_articles(paths):
  paths = sorted(paths, key=os.path.basename)
  plan = pubmed.build_plan([pubmed.index_file(p) for p in paths])
  articles, skipped = [], collections.Counter()
  for path, drop in zip(paths, plan):
    articles.extend(pubmed.read_file(path, drop, skipped))
  return articles, skipped


def test_real_baseline_and_update_pair(pubmed_dir):
  baseline = os.path.join(pubmed_dir, "pubmed26n1334.xml.gz")
  update = os.path.join(pubmed_dir, "updates", "pubmed26n1335.xml.gz")
  deleted = set(_parse_expected(update).deleted)
  assert len(deleted) == 6
  articles, _ = _final_articles([update, baseline])
  pmids = [a.pmid for a in articles]
  assert len(pmids) == len(set(pmids))
  assert not deleted & set(pmids)
  with_abstract = {pmid for path in (baseline, update)
                   for pmid, (_, s) in _expected_articles(path).items() if s}
  assert set(pmids) == with_abstract - deleted


def test_real_pair_plus_crafted_update_revises_and_deletes(pubmed_dir,
                                                           tmp_path):
  baseline = os.path.join(pubmed_dir, "pubmed26n1334.xml.gz")
  update = os.path.join(pubmed_dir, "updates", "pubmed26n1335.xml.gz")
  real = _expected_articles(baseline)
  revised, removed, readded = [p for p, (_, s) in real.items() if s][:3]
  crafted = _write_set(tmp_path / "pubmed26n1336.xml.gz", [
      _record(revised, "A revised title for the crafted update file.",
              "The revised abstract replaces the baseline text entirely."),
      _record(readded, "Re-added after its deletion in the same file.",
              "This version must survive since it follows the deletion."),
  ], deletions=[removed, readded], gz=True)
  # The deletion of `readded` comes after its record in this file, so a
  # later file brings it back.
  later = _write_set(tmp_path / "pubmed26n1337.xml", [
      _record(readded, "Re-added after its deletion in the same file.",
              "This version must survive since it follows the deletion.")])
  articles, skipped = _final_articles([baseline, update, crafted, later])
  by_pmid = collections.Counter(a.pmid for a in articles)
  assert max(by_pmid.values()) == 1
  assert removed not in by_pmid
  assert by_pmid[revised] == 1 and by_pmid[readded] == 1
  text = {a.pmid: (a.title, [s for _, s in a.sections]) for a in articles}
  assert text[revised] == (
      "A revised title for the crafted update file.",
      ["The revised abstract replaces the baseline text entirely."])
  # The reason names each PMID's final event: `removed` ends deleted; the
  # older records of `revised` and `readded` (baseline and crafted) were
  # superseded by a later record.
  assert skipped["deleted"] == 1
  assert skipped["superseded"] == 3


def test_crafted_update_order_is_by_file_name_not_argument_order(tmp_path):
  first = _write_set(tmp_path / "pubmed26n0001.xml", [
      _record(7, "Old title of the record number seven.",
              "The old abstract text of record seven.")])
  second = _write_set(tmp_path / "pubmed26n0002.xml", [
      _record(7, "New title of the record number seven.",
              "The new abstract text of record seven.")])
  articles, _ = _final_articles([second, first])
  assert [a.title for a in articles] == [
      "New title of the record number seven."]
  only_deleted = _write_set(tmp_path / "pubmed26n0003.xml", [], [7])
  articles, skipped = _final_articles([first, second, only_deleted])
  assert articles == [] and skipped["deleted"] == 2
  assert not _final_articles([only_deleted])[0]


def test_inline_markup_keeps_text_and_no_abstract_is_skipped(tmp_path):
  path = _write_set(tmp_path / "markup.xml", [
      _record(1, "Growth of <i>E. coli</i> at 37<sup>o</sup>C",
              "CO<sub>2</sub> levels rose in <b>all</b> cultures of "
              "<i>S. aureus</i>."),
      _record(2, "A title with no abstract at all in the record"),
  ])
  skipped = collections.Counter()
  articles = list(pubmed.read_file(path, skipped=skipped))
  assert len(articles) == 1
  assert articles[0].title == "Growth of E. coli at 37oC"
  assert articles[0].sections == [
      ("", "CO2 levels rose in all cultures of S. aureus.")]
  assert skipped == {"no_abstract": 1}


# ------------------------------------------------------------- bad input ---

def _gz_records(n):
  return [_record(i + 1, "Title of record number %d in the set." % i,
                  "Abstract of record %d with a few words of text." % i)
          for i in range(n)]


def test_truncated_gzip_keeps_complete_records_and_reports(tmp_path):
  full = _write_set(tmp_path / "full.xml.gz", _gz_records(400), gz=True)
  with open(full, "rb") as f:
    data = f.read()
  cut = tmp_path / "cut.xml.gz"
  cut.write_bytes(data[:len(data) // 2])
  errors, skipped = [], collections.Counter()
  articles = list(pubmed.read_file(str(cut), None, skipped, errors))
  assert 0 < len(articles) < 400
  assert [a.pmid for a in articles] == list(range(1, len(articles) + 1))
  assert len(errors) == 1 and errors[0]["file"] == str(cut)
  assert "truncated" in errors[0]["reason"]
  assert skipped["bad_file"] == 1
  # The index pass sees exactly the same records.
  index = pubmed.index_file(str(cut))
  assert list(index.pmids) == [a.pmid for a in articles]
  assert "truncated" in index.error


def test_malformed_xml_and_broken_encoding_are_reported_with_line(tmp_path):
  records = _gz_records(3)
  broken = records[0] + records[1] + records[2].replace(
      "</ArticleTitle>", "</ArticleTitl>")
  path = _write_set(tmp_path / "malformed.xml", [broken])
  errors = []
  articles = list(pubmed.read_file(path, errors=errors))
  assert [a.pmid for a in articles] == [1, 2]
  assert "malformed XML" in errors[0]["reason"]
  assert "line" in errors[0]["reason"]
  bad_bytes = tmp_path / "encoding.xml"
  good = open(_write_set(tmp_path / "ok.xml", records), "rb").read()
  bad_bytes.write_bytes(good.replace(b"record 2 with", b"record 2 \xff\xfe"))
  errors = []
  articles = list(pubmed.read_file(str(bad_bytes), errors=errors))
  assert [a.pmid for a in articles] == [1, 2]
  assert "invalid token" in errors[0]["reason"]
  assert list(pubmed.index_file(str(bad_bytes)).pmids) == [1, 2]


def test_empty_and_wrong_files_are_reported(tmp_path):
  empty = tmp_path / "empty.xml.gz"
  empty.write_bytes(b"")
  empty_gz = tmp_path / "empty2.xml.gz"
  with gzip.open(empty_gz, "wb"):
    pass
  other = tmp_path / "other.xml"
  other.write_text("<html><body>not pubmed</body></html>")
  for path, reason in ((empty, "empty file"), (empty_gz, "empty file"),
                       (other, "not a PubmedArticleSet")):
    errors = []
    assert list(pubmed.read_file(str(path), errors=errors)) == []
    assert reason in errors[0]["reason"], errors
    assert reason in pubmed.index_file(str(path)).error


def test_memory_stays_flat_while_streaming(tmp_path):
  # ~3 MB of XML: keeping the parsed tree would take about 7 MB (measured),
  # clearing each article keeps the peak under 0.5 MB.
  path = _write_set(tmp_path / "big.xml.gz", [
      _record(i + 1, "Title of record %d. " % i + "word " * 40,
              "Abstract %d. " % i + "token " * 150)
      for i in range(3000)], gz=True)
  tracemalloc.start()
  try:
    count = sum(1 for _ in pubmed.read_file(path))
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert count == 3000
  assert peak < 2 << 20, peak


def test_inputs_without_any_pmid_are_kept_not_a_crash(tmp_path):
  record = _record(1, "A title long enough to be kept",
                   "An abstract sentence long enough to be kept.")
  no_pmid = record.replace('<PMID Version="1">1</PMID>', "")
  path = _write_set(tmp_path / "nopmid.xml", [no_pmid, no_pmid])
  assert pubmed.build_plan([pubmed.index_file(path)]) == [{}]
  manifest = prepare.run(_settings(path, str(tmp_path / "out")),
                         report=lambda msg: None)
  assert manifest["totals"]["documents"] == 2
