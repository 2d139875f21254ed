"""bio.serving.tag's inputs and outputs: every format read back by a second
reader (the `bioc` library, json, our own line split) and every offset
checked by slicing the text it points into.

The model is the tiny random-weight export of tests/bio/tiny_ner.py;
`CachedTagger` there runs it once per distinct text so that four output
formats of the same input cost one tagging pass.
"""
import glob
import gzip
import json
import os
import xml.etree.ElementTree as ET

import bioc
from bioc import biocjson
import pytest

from bio.serving import documents
from bio.serving import tag

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))
FORMATS = ("jsonl", "pubtator", "bioc", "bioc_json")


@pytest.fixture(scope="module")
def cached(cached_tagger):
  return cached_tagger


def _chemdner_pubtator(data_dir, path, limit=25):
  """The first CHEMDNER development abstracts as PubTator (built here from
  the distribution's own title/abstract offsets)."""
  data = os.path.join(data_dir, "ner-raw", "chemdner")
  docs = {}
  with open(os.path.join(data, "development.abstracts.txt"),
            encoding="utf-8") as f:
    for line in f:
      pmid, title, abstract = line.rstrip("\n").split("\t")
      docs[pmid] = (title, abstract, [])
      if len(docs) == limit:
        break
  with open(os.path.join(data, "development.annotations.txt"),
            encoding="utf-8") as f:
    for line in f:
      pmid, part, start, end, text, kind = line.rstrip("\n").split("\t")
      if pmid in docs:
        shift = 0 if part == "T" else len(docs[pmid][0]) + 1
        docs[pmid][2].append((int(start) + shift, int(end) + shift, text,
                              kind))
  blocks = []
  for pmid, (title, abstract, anns) in docs.items():
    lines = ["%s|t|%s" % (pmid, title), "%s|a|%s" % (pmid, abstract)]
    for i, (start, end, text, kind) in enumerate(sorted(anns)):
      lines.append("%s\t%d\t%d\t%s\t%s\tMESH:%d" % (pmid, start, end, text,
                                                    kind, i))
    lines.append("%s\tCID\tMESH:0\tMESH:1" % pmid)
    blocks.append("\n".join(lines) + "\n")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(blocks))
  return list(docs)


def parse_pubtator(path):
  """{id: (text, [annotation columns], [relation columns])}, in order."""
  out = {}
  with open(path, encoding="utf-8") as f:
    for block in f.read().split("\n\n"):
      if not block.strip():
        continue
      lines = [l for l in block.split("\n") if l]
      pmid, _, title = lines[0].partition("|t|")
      assert lines[1].startswith(pmid + "|a|")
      text = title + " " + lines[1].partition("|a|")[2]
      assert pmid not in out
      anns = [l.split("\t") for l in lines[2:] if l.split("\t")[1].isdigit()]
      rels = [l.split("\t") for l in lines[2:]
              if not l.split("\t")[1].isdigit()]
      out[pmid] = (text, anns, rels)
  return out


def check_bioc_collection(collection):
  """Offsets slice to the text in the passage; ids distinct; returns
  {doc id: [annotations]}."""
  found = {}
  for doc in collection.documents:
    assert doc.id not in found
    ids = [a.id for a in documents.all_annotations(doc)]
    assert len(ids) == len(set(ids)), doc.id
    end = 0
    for passage in doc.passages:
      assert passage.offset >= end
      end = passage.offset + len(passage.text)
      for ann in passage.annotations:
        for loc in ann.locations:
          local = loc.offset - passage.offset
          assert 0 <= local and local + loc.length <= len(passage.text)
          assert passage.text[local:local + loc.length] == ann.text, (
              doc.id, ann.id)
    found[doc.id] = documents.all_annotations(doc)
  return found


def _tag_all_formats(cached, input_path, out_dir, **kwargs):
  paths = {}
  for fmt in FORMATS:
    paths[fmt] = os.path.join(out_dir, "out." + fmt)
    tag.tag_file(cached, input_path, paths[fmt], fmt, batch_size=8, **kwargs)
  return paths


def _read_all(paths):
  """Each output read back by another reader: ids and entities per doc."""
  with open(paths["bioc"], "rb") as f:
    from_xml = check_bioc_collection(bioc.biocxml.load(f))
  with open(paths["bioc_json"], encoding="utf-8") as f:
    from_json = check_bioc_collection(biocjson.load(f))
  with open(paths["jsonl"], encoding="utf-8") as f:
    records = [json.loads(l) for l in f]
  for r in records:
    for e in r["entities"] + r.get("input_annotations", []):
      assert r["text"][e["start"]:e["end"]] == e["text"]
  pubtator = parse_pubtator(paths["pubtator"])
  for text, anns, _ in pubtator.values():
    for cols in anns:
      assert text[int(cols[1]):int(cols[2])] == cols[3]
  return from_xml, from_json, records, pubtator


def _spans(annotations):
  return sorted((a.locations[0].offset, a.locations[0].offset +
                 a.locations[0].length, a.text, a.infons["type"])
                for a in annotations)


def test_pubtator_round_trip_keeps_every_annotation(cached, shared_data_dir,
                                                     tmp_path):
  source = str(tmp_path / "chemdner.pubtator")
  pmids = _chemdner_pubtator(shared_data_dir, source)
  assert documents.detect_format(source) == "pubtator"
  given = parse_pubtator(source)
  paths = _tag_all_formats(cached, source, str(tmp_path))
  from_xml, from_json, records, pubtator = _read_all(paths)
  assert list(pubtator) == list(from_xml) == list(from_json) == pmids
  assert [r["id"] for r in records] == pmids
  new = 0
  for pmid, (text, anns, rels) in given.items():
    out_text, out_anns, out_rels = pubtator[pmid]
    assert out_text == text
    # every input line, all its columns, in order, before the new ones
    assert out_anns[:len(anns)] == anns and out_rels == rels
    assert all(len(c) == 5 for c in out_anns[len(anns):])
    new += len(out_anns) - len(anns)
    kept = [a for a in from_xml[pmid] if a.infons.get("annotator") is None]
    assert [(a.infons["identifier"], a.text) for a in kept] == [
        (c[5], c[3]) for c in anns]
    assert _spans(from_xml[pmid]) == _spans(from_json[pmid])
  assert new > 0


def _pubmed_ids(path):
  with gzip.open(path) as f:
    root = ET.parse(f).getroot()
  return [a.findtext("MedlineCitation/PMID") for a in root.iter(
      "PubmedArticle") if "".join(t for e in a.iterfind(
          ".//Abstract/AbstractText") for t in e.itertext()).strip()]


@pytest.mark.parametrize("name", [
    "pubmed26n1334.xml.gz", "updates/pubmed26n1335.xml.gz",
    "pubmed21n0001-small.xml.gz", "pubmed-sample-0001.xml.gz",
    "pubmed-sample-0002.xml.gz"])
def test_shared_pubmed_files_in_all_formats(cached, pubmed_dir, tmp_path,
                                            name):
  source = os.path.join(pubmed_dir, name)
  paths = _tag_all_formats(cached, source, str(tmp_path))
  from_xml, from_json, records, pubtator = _read_all(paths)
  want = _pubmed_ids(source)
  assert list(from_xml) == list(from_json) == list(pubtator) == want
  assert [r["id"] for r in records] == want
  for r in records:
    doc_xml = from_xml[r["id"]]
    assert _spans(doc_xml) == sorted(
        (e["start"], e["end"], e["text"], e["type"]) for e in r["entities"])
    assert sorted((int(c[1]), int(c[2]), c[3], c[4])
                  for c in pubtator[r["id"]][1]) == _spans(doc_xml)
    assert pubtator[r["id"]][0] == r["text"]


def _pmc_paragraphs(path):
  from bio.corpus import pmc  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    article = pmc.parse_jats(f.read(), os.path.basename(path))
  return article.article_id, pmc.article_blocks(article)


def test_shared_pmc_articles_in_all_formats(cached, shared_data_dir,
                                            tmp_path):
  for path in sorted(glob.glob(os.path.join(shared_data_dir, "pmc",
                                            "*.nxml"))):
    out_dir = tmp_path / os.path.basename(path)
    out_dir.mkdir()
    paths = _tag_all_formats(cached, path, str(out_dir))
    from_xml, from_json, records, pubtator = _read_all(paths)
    article_id, paragraphs = _pmc_paragraphs(path)
    assert list(from_xml) == list(from_json) == list(pubtator) == [
        article_id]
    with open(paths["bioc"], "rb") as f:
      doc = bioc.biocxml.load(f).documents[0]
    assert [p.text for p in doc.passages] == paragraphs
    assert doc.passages[0].infons["type"] == "title"
    assert {p.infons["type"] for p in doc.passages[1:]} == {
        "abstract", "paragraph"}
    assert _spans(from_xml[article_id]) == _spans(from_json[article_id])
    assert len(from_xml[article_id]) == len(records[0]["entities"]) > 0


def _pubtator3_document(pmid):
  """A document as PubTator3's BioC JSON export writes it (no relations,
  an identifier infon, a passage without sentences)."""
  title = "Tamoxifen and breast cancer"
  return {"_id": pmid, "id": pmid, "infons": {}, "passages": [
      {"infons": {"type": "title"}, "offset": 0, "text": title,
       "annotations": [{"id": "1", "infons": {
           "identifier": "MESH:D013629", "type": "Chemical"},
                        "text": "Tamoxifen",
                        "locations": [{"offset": 0, "length": 9}]}]},
      {"infons": {"type": "abstract"}, "offset": len(title) + 1,
       "text": "Tamoxifen lowers the risk of recurrence."}]}


def test_bioc_json_forms_keep_their_annotations(cached, tmp_path):
  pubtator3 = tmp_path / "export.json"
  pubtator3.write_text(json.dumps({"PubTator3": [
      _pubtator3_document("111"), _pubtator3_document("222")]}))
  lines = tmp_path / "docs.jsonl"
  doc = dict(_pubtator3_document("333"), bioctype="BioCDocument")
  lines.write_text(json.dumps(doc) + "\n" + "{not json\n" +
                   json.dumps(dict(doc, id="444")) + "\n")
  for source, want in ((pubtator3, ["111", "222"]), (lines, ["333", "444"])):
    assert documents.detect_format(str(source)) == "bioc_json"
    problems = []
    out = str(tmp_path / (source.name + ".out.json"))
    tag.tag_file(cached, str(source), out, "bioc_json", problems=problems)
    with open(out, encoding="utf-8") as f:
      found = check_bioc_collection(biocjson.load(f))
    assert list(found) == want
    assert len(problems) == (source == lines)
    for anns in found.values():
      kept = [a for a in anns if a.infons.get("identifier")]
      assert [(a.id, a.text) for a in kept] == [("1", "Tamoxifen")]
      assert "1" not in [a.id for a in anns if a not in kept]


def test_formats_are_detected_by_name_and_content(tmp_path, shared_data_dir):
  pmc_file = glob.glob(os.path.join(shared_data_dir, "pmc", "*.nxml"))[0]
  assert documents.detect_format(pmc_file) == "pmc"
  renamed = tmp_path / "article.xml"
  renamed.write_bytes(open(pmc_file, "rb").read())
  assert documents.detect_format(str(renamed)) == "pmc"
  bioc_file = tmp_path / "c.xml"
  bioc_file.write_text("<?xml version='1.0'?>\n<!DOCTYPE collection SYSTEM "
                       "'BioC.dtd'>\n<collection><source/></collection>")
  assert documents.detect_format(str(bioc_file)) == "bioc"
  gz = os.path.join(shared_data_dir, "pubmed", "pubmed26n1334.xml.gz")
  assert documents.detect_format(gz) == "pubmed"
  text = tmp_path / "t.txt"
  text.write_text("One abstract per line.\n")
  assert documents.detect_format(str(text)) == "text"
