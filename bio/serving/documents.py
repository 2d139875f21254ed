r"""Documents to tag, read from the formats biomedical text comes in.

Every reader yields `bioc.BioCDocument`s (the `bioc` package's data model):
one passage per title, abstract or paragraph, each with its `offset` in the
document (Unicode code points) and a `type` infon ("title", "abstract",
"paragraph", "text"). Annotations an input already has are kept on their
passage (or on the document), so a writer can emit them with the new ones.

Inputs (`read_documents(path, input_format)`; "auto" decides by the name and
the first bytes, `detect_format`):

* text: one document per non-empty line, id = line number, one passage.
* pubmed: PubMed/MEDLINE XML, plain or gzip (bio.corpus.pubmed, streaming):
  title at offset 0, the abstract sections joined by spaces at
  len(title) + 1 (PubTator's offsets).
* pmc: PMC JATS .nxml (or an OA .tar.gz package; bio.corpus.pmc): title,
  each abstract paragraph, each body paragraph; a passage starts one
  character after the end of the previous one.
* pubtator: `ID|t|title`, `ID|a|abstract`, annotation lines
  `ID<TAB>start<TAB>end<TAB>mention<TAB>type[<TAB>identifier...]` and
  relation lines `ID<TAB>relation<TAB>id1<TAB>id2`, a blank line after each
  document. Annotations get ids "0", "1", ... in file order; every column
  is kept.
* bioc: BioC XML, streamed with lxml (each <document> is decoded by the
  `bioc` library, then freed, so memory stays flat).
* bioc_json: a BioC JSON collection (read whole: JSON has no streaming
  reader in the standard library), PubTator3's {"PubTator3": [...]} form,
  or BioC JSON lines (one document per line, streamed).

A malformed document does not stop a reader: it yields a `BadDocument`
(file, document id, reason) in its place and goes on where the format
allows it (a PubTator block, a BioC JSON line, a text line); an XML syntax
error ends the file after the complete documents before it.

The text the model sees (`document_text`) puts every passage at its offset,
the gaps filled with spaces, so entity offsets in it are document offsets.
"""
import collections
import gzip
import io
import json
import os

import bioc
from bioc import biocjson
from lxml import etree

BadDocument = collections.namedtuple("BadDocument",
                                     ["file", "doc_id", "reason"])

FORMATS = ("text", "pubmed", "pmc", "pubtator", "bioc", "bioc_json")
TYPE = "type"  # the infon of a passage's and an annotation's type
_SNIFF_BYTES = 4096


class InputError(ValueError):
  """An input that cannot be read at all (reported as one line)."""


class Progress(object):
  """How far a reader is in its file: `fraction()` of the bytes on disk."""

  def __init__(self, path):
    self.raw = None
    try:
      self.size = os.path.getsize(path)
    except OSError:
      self.size = 0

  def fraction(self):
    """Read share of the file in [0, 1], or None when unknown."""
    try:
      return min(1.0, self.raw.tell() / self.size) if self.size else None
    except (AttributeError, OSError, ValueError):
      return None


def _open_binary(path, progress=None):
  """The file's bytes, gunzipped when it starts with the gzip magic."""
  raw = open(path, "rb")
  if progress is not None:
    progress.raw = raw
  if raw.read(2) == b"\x1f\x8b":
    raw.seek(0)
    return gzip.GzipFile(fileobj=raw)
  raw.seek(0)
  return raw


def _sniff(path):
  try:
    with _open_binary(path) as f:
      return f.read(_SNIFF_BYTES)
  except (OSError, EOFError):
    return b""


def _root_element(head):
  """Name of the first element of an XML prefix (None if it has none)."""
  pos = 0
  while True:
    pos = head.find(b"<", pos)
    if pos < 0 or pos + 1 >= len(head):
      return None
    if head[pos + 1:pos + 2] not in (b"?", b"!"):
      name = (head[pos + 1:].split(None, 1) or [b""])[0]
      return name.split(b">")[0].split(b"/")[0].decode("utf-8", "replace")
    pos += 1


def detect_format(path):
  """One of FORMATS for `path`, from its name and its first bytes."""
  name = path.lower()
  if name.endswith(".gz"):
    name = name[:-len(".gz")]
  if name.endswith((".tar", ".tgz", ".nxml")):
    return "pmc"  # a JATS article or an OA package of them
  head = _sniff(path)
  if name.endswith((".json", ".jsonl")) or head.lstrip()[:1] in (b"{", b"["):
    return "bioc_json"
  if head.lstrip().startswith(b"<"):
    root = _root_element(head) or ""
    root = root.split(":")[-1]
    return {"collection": "bioc", "article": "pmc"}.get(root, "pubmed")
  first = head.split(b"\n", 1)[0]
  if b"|t|" in first or b"|a|" in first:
    return "pubtator"
  return "text"


def new_document(doc_id, texts, types, gap=1):
  """A BioCDocument whose passages follow each other `gap` apart."""
  doc = bioc.BioCDocument()
  doc.id = str(doc_id)
  offset = 0
  for text, kind in zip(texts, types):
    passage = bioc.BioCPassage()
    passage.offset = offset
    passage.text = text
    passage.infons[TYPE] = kind
    doc.add_passage(passage)
    offset += len(text) + gap
  return doc


def document_text(doc):
  """The passages at their offsets, gaps filled with spaces."""
  parts = []
  end = 0
  for passage in doc.passages:
    text = passage.text or ""
    parts.append(" " * (passage.offset - end))
    parts.append(text)
    end = passage.offset + len(text)
  return "".join(parts)


def all_annotations(doc):
  """Every annotation of a document: passages, sentences, then document."""
  out = []
  for passage in doc.passages:
    for sentence in passage.sentences:
      out.extend(sentence.annotations)
    out.extend(passage.annotations)
  out.extend(doc.annotations)
  return out


def check_document(doc):
  """The reason a decoded document cannot be tagged, or None."""
  if not doc.id or not str(doc.id).strip():
    return "no document id"
  end = 0
  for passage in doc.passages:
    if not isinstance(passage.offset, int) or passage.offset < end:
      return ("passage at offset %r overlaps the previous one (which ends "
              "at %d)" % (passage.offset, end))
    end = passage.offset + len(passage.text or "")
  for ann in all_annotations(doc):
    for loc in ann.locations:
      if not isinstance(loc.offset, int) or not isinstance(loc.length, int) \
          or loc.offset < 0 or loc.length < 0:
        return "annotation %s has a bad location %r+%r" % (
            ann.id, loc.offset, loc.length)
  return None


def _checked(path, doc):
  reason = check_document(doc)
  if reason:
    return BadDocument(path, doc.id or "-", reason)
  return doc


def read_text(path, progress=None):
  """One document per non-empty line; its id is the line number."""
  with open(path, "rb") as f:
    if progress is not None:
      progress.raw = f
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as e:
        yield BadDocument(path, str(number), "not valid UTF-8 (%s)" % e)
        continue
      if line.strip():
        yield new_document(number, [line], ["text"])


def read_pubmed(path, progress=None):
  """Title and abstract of every article that has an abstract."""
  from bio.corpus import pubmed  # pylint: disable=g-import-not-at-top
  errors = []
  last = "-"
  for article in pubmed.read_file(path, errors=errors,
                                  progress=progress):
    abstract = " ".join(text for _, text in article.sections)
    if article.pmid == pubmed.NO_PMID:
      yield BadDocument(path, "after %s" % last, "article without a PMID")
      continue
    last = str(article.pmid)
    if article.title:
      yield new_document(last, [article.title, abstract],
                         ["title", "abstract"])
    else:
      yield new_document(last, [abstract], ["abstract"])
  for error in errors:
    yield BadDocument(path, "after %s" % last, error["reason"])


def read_pmc(path, progress=None):
  """Title, abstract paragraphs and body paragraphs of each article."""
  from bio.corpus import pmc  # pylint: disable=g-import-not-at-top
  errors = []
  for article in pmc.read_file(path, errors=errors, progress=progress):
    texts = ([article.title] if article.title else []) + list(
        article.abstract) + list(article.body)
    types = (["title"] if article.title else []) + ["abstract"] * len(
        article.abstract) + ["paragraph"] * len(article.body)
    if not texts:
      yield BadDocument(path, article.article_id, "no text")
      continue
    yield new_document(article.article_id, texts, types)
  for error in errors:
    yield BadDocument(path, error.get("member", "-"), error["reason"])


def _pubtator_blocks(path, progress):
  """(first line number, [lines]) per blank-line separated block."""
  block, start = [], None
  with _open_binary(path, progress) as f:
    for number, raw in enumerate(f, 1):
      line = raw.rstrip(b"\r\n")
      if not line.strip():
        if block:
          yield start, block
        block, start = [], None
        continue
      if start is None:
        start = number
      block.append(line)
  if block:
    yield start, block


def _pubtator_annotation(doc_id, cols, text, index):
  """A BioCAnnotation from one annotation line's columns (or a reason)."""
  if cols[0] != doc_id:
    return "annotation line of document %s inside document %s" % (
        cols[0], doc_id)
  if not (cols[1].isdigit() and cols[2].isdigit()):
    return "annotation offsets %r %r are not numbers" % (cols[1], cols[2])
  start, end = int(cols[1]), int(cols[2])
  if not start <= end <= len(text):
    return "annotation %d-%d is outside the text (length %d)" % (
        start, end, len(text))
  if text[start:end] != cols[3]:
    return "annotation %d-%d is %r but the text there is %r" % (
        start, end, cols[3], text[start:end])
  ann = bioc.BioCAnnotation()
  ann.id = str(index)
  ann.text = cols[3]
  ann.infons[TYPE] = cols[4]
  if len(cols) > 5:
    ann.infons["identifier"] = cols[5]
  for k, extra in enumerate(cols[6:]):
    ann.infons["column%d" % (k + 7)] = extra
  ann.add_location(bioc.BioCLocation(start, end - start))
  return ann


def _pubtator_document(lines, first):
  """A BioCDocument from one block's decoded lines, the first being line
  `first` of the file (or a reason string)."""
  head = {}
  for kind in ("t", "a"):
    if not lines or "|%s|" % kind not in lines[0].split("\t", 1)[0]:
      return "line %d: expected ID|%s|text" % (first + len(head), kind)
    doc_id, found, value = lines.pop(0).partition("|%s|" % kind)
    head[kind] = (doc_id, value)
  doc_id = head["t"][0]
  if head["a"][0] != doc_id:
    return "title of %s but abstract of %s" % (doc_id, head["a"][0])
  doc = new_document(doc_id, [head["t"][1], head["a"][1]],
                     ["title", "abstract"])
  text = document_text(doc)
  for number, line in enumerate(lines, first + 2):
    cols = line.split("\t")
    if len(cols) == 4 and not cols[1].isdigit():
      rel = bioc.BioCRelation()
      rel.id = "R%d" % len(doc.relations)
      rel.infons.update({TYPE: cols[1], "entity1": cols[2],
                         "entity2": cols[3]})
      doc.add_relation(rel)
      continue
    if len(cols) < 5:
      return "line %d: not an annotation line: %r" % (number, line[:80])
    ann = _pubtator_annotation(doc_id, cols, text, len(all_annotations(doc)))
    if isinstance(ann, str):
      return "line %d: %s" % (number, ann)
    passage = doc.passages[0 if int(cols[1]) <= len(head["t"][1]) else 1]
    passage.add_annotation(ann)
  return doc


def read_pubtator(path, progress=None):
  """PubTator documents with their annotations and relations."""
  for start, raw_lines in _pubtator_blocks(path, progress):
    guess = raw_lines[0].split(b"|", 1)[0].decode("utf-8", "replace")[:40]
    try:
      lines = [l.decode("utf-8") for l in raw_lines]
    except UnicodeDecodeError as e:
      yield BadDocument(path, guess, "not valid UTF-8 (%s)" % e)
      continue
    doc = _pubtator_document(lines, start)
    if isinstance(doc, str):
      yield BadDocument(path, guess, doc)
    else:
      yield doc


def _bioc_document(elem):
  """Decodes one <document> element with the bioc library."""
  xml = etree.tostring(elem, encoding="unicode")
  collection = bioc.biocxml.loads("<collection>%s</collection>" % xml)
  return collection.documents[0]


def read_bioc_xml(path, progress=None):
  """Every <document> of a BioC XML collection, one at a time."""
  last = "-"
  with _open_binary(path, progress) as f:
    try:
      for _, elem in etree.iterparse(f, events=("end",), tag="document",
                                     resolve_entities=False, no_network=True,
                                     huge_tree=True):
        doc_id = elem.findtext("id") or "after %s" % last
        try:
          doc = _bioc_document(elem)
        except (ValueError, TypeError, KeyError) as e:
          yield BadDocument(path, doc_id, "not a BioC document (%s)" % e)
        else:
          yield _checked(path, doc)
        last = doc_id
        elem.clear()
        while elem.getprevious() is not None:
          del elem.getparent()[0]
    except (etree.XMLSyntaxError, OSError, EOFError) as e:
      yield BadDocument(path, "after %s" % last, "malformed XML: %s" % e)


def _bioc_json_document(path, obj, where):
  """A checked BioCDocument from a decoded JSON object (or BadDocument)."""
  doc_id = str(obj.get("id", where)) if isinstance(obj, dict) else where
  try:
    obj = dict(obj)
    obj.setdefault("infons", {})
    obj.setdefault("relations", [])
    for passage in obj["passages"]:
      passage.setdefault("infons", {})
      passage.setdefault("sentences", [])
      passage.setdefault("annotations", [])
      passage.setdefault("relations", [])
      for ann in passage["annotations"]:
        ann.setdefault("infons", {})
    doc = biocjson.decoder.parse_doc(obj)
    doc.id = str(doc.id)
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    return BadDocument(path, doc_id, "not a BioC JSON document (%s: %s)" % (
        type(e).__name__, e))
  return _checked(path, doc)


def read_bioc_json(path, progress=None):
  """Documents of a BioC JSON collection or of BioC JSON lines."""
  with _open_binary(path, progress) as f:
    data = f.read()
  try:
    whole = json.loads(data)
  except ValueError:
    whole = None  # JSON lines, or broken JSON: decoded line by line
  except UnicodeDecodeError as e:
    yield BadDocument(path, "-", "not valid UTF-8 (%s)" % e)
    return
  if whole is not None:
    if isinstance(whole, dict) and whole.get("bioctype") == "BioCDocument":
      docs = [whole]
    elif isinstance(whole, dict):
      docs = whole.get("documents", whole.get("PubTator3"))
    else:
      docs = whole
    if not isinstance(docs, list):
      yield BadDocument(path, "-", "no documents (a BioC JSON collection "
                        "has a \"documents\" list)")
      return
    for i, obj in enumerate(docs):
      yield _bioc_json_document(path, obj, "document #%d" % (i + 1))
    return
  for number, line in enumerate(io.BytesIO(data), 1):
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except ValueError as e:
      yield BadDocument(path, "line %d" % number, "not JSON (%s)" % e)
      continue
    yield _bioc_json_document(path, obj, "line %d" % number)


READERS = {
    "text": read_text,
    "pubmed": read_pubmed,
    "pmc": read_pmc,
    "pubtator": read_pubtator,
    "bioc": read_bioc_xml,
    "bioc_json": read_bioc_json,
}


def read_documents(path, input_format="auto", progress=None):
  """BioCDocument or BadDocument items of `path`, in file order; a
  `Progress` follows how much of the file has been read."""
  if input_format == "auto":
    input_format = detect_format(path)
  if input_format not in READERS:
    raise InputError("unknown input format %r (one of %s)" % (
        input_format, ", ".join(FORMATS)))
  return READERS[input_format](path, progress)
