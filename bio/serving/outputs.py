r"""Tagged documents written as JSONL, PubTator, BioC XML or BioC JSON.

`add_entities(doc, entities)` turns the model's entities (document offsets
in `documents.document_text(doc)`) into BioC annotations on the passage
that holds each one (an entity that runs past its passage's end is cut
there), with ids distinct from every annotation the document already has.
Their infons: `type`, `score` (the mean label probability, 4 decimals) and
`annotator` = "BioALBERT"; their location is a document offset and length
in code points, so `passage.text[offset - passage.offset:][:length]` is
their `text`.

Formats (`FORMATS`; every input annotation is written too):

* jsonl: one object per document, {"id", "text" (document_text), "entities":
  [{"start", "end", "text", "type", "score"}]}, plus "input_annotations"
  [{"id", "start", "end", "text", "infons"}] when the input had some.
* pubtator: `ID|t|first passage`, `ID|a|the rest`, the input annotation lines
  with all their columns, then `ID<TAB>start<TAB>end<TAB>mention<TAB>type`
  per new entity and the input relation lines; offsets count over
  title + " " + abstract. Line breaks inside a text become spaces.
* bioc: a BioC XML collection, one <document> per document, written by the
  `bioc` library's encoder. Characters XML 1.0 cannot carry (C0 controls
  other than tab/newline) become spaces, so offsets do not move.
* bioc_json: a BioC JSON collection (the `bioc` library's encoding).

`OutputFile` writes a whole output under a temporary name and renames it at
the end; with `resume=True` it writes parts into a hidden directory beside
the output (`.NAME.parts/`, with a manifest of the run), each part renamed
into place when complete, so a killed run leaves only complete parts; a
re-run with the same input and settings skips the documents they hold and
concatenates them into the same bytes an uninterrupted run writes.
"""
import json
import os
import re
import shutil
import time
from xml.sax import saxutils

import bioc
from bioc import biocjson
from bioc.biocxml import encoder as biocxml_encoder
from lxml import etree

from albert import file_utils
from bio.serving import documents

ANNOTATOR = "BioALBERT"
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_LINE_BREAKS = re.compile("[\r\n\u2028\u2029\x85\x0b\x0c\x1c-\x1e]")


class ResumeError(documents.InputError):
  """Parts on disk that belong to another run."""


def _new_ids(doc):
  """Fresh annotation ids "0", "1", ... not used anywhere in `doc`."""
  used = {a.id for a in documents.all_annotations(doc)}
  used.update(r.id for r in doc.relations)
  n = 0
  while True:
    if str(n) not in used:
      yield str(n)
    n += 1


def _passage_at(doc, start):
  for passage in doc.passages:
    if passage.offset <= start < passage.offset + len(passage.text or ""):
      return passage
  return None


def add_entities(doc, entities):
  """Adds the model's entities to `doc` as annotations; returns them."""
  ids = _new_ids(doc)
  added = []
  for entity in sorted(entities, key=lambda e: (e["start"], e["end"])):
    start, end = entity["start"], entity["end"]
    passage = _passage_at(doc, start)
    if passage is None:
      continue  # in a gap between passages: only spaces are there
    local = passage.text[start - passage.offset:
                         min(end, passage.offset + len(passage.text))
                         - passage.offset].rstrip()
    if not local:
      continue
    ann = bioc.BioCAnnotation()
    ann.id = next(ids)
    ann.infons.update({documents.TYPE: entity["type"],
                       "score": "%.4f" % entity["score"],
                       "annotator": ANNOTATOR})
    ann.text = local
    ann.add_location(bioc.BioCLocation(start, len(local)))
    passage.add_annotation(ann)
    added.append(ann)
  return added


def _span(ann):
  loc = ann.locations[0] if ann.locations else bioc.BioCLocation(0, 0)
  return loc.offset, loc.offset + loc.length


def format_jsonl(doc, text, new):
  entities = [{"start": _span(a)[0], "end": _span(a)[1], "text": a.text,
               "type": a.infons[documents.TYPE],
               "score": float(a.infons["score"])} for a in new]
  record = {"id": doc.id, "text": text, "entities": entities}
  new_ids = {id(a) for a in new}
  kept = [a for a in documents.all_annotations(doc) if id(a) not in new_ids]
  if kept:
    record["input_annotations"] = [
        {"id": a.id, "start": _span(a)[0], "end": _span(a)[1],
         "text": a.text, "infons": a.infons} for a in kept]
  return json.dumps(record, ensure_ascii=False) + "\n"


def _pubtator_head(doc, text):
  """(title, abstract) whose title + " " + abstract is `text` (a single
  passage, or passages that touch, go whole into the title)."""
  passages = doc.passages
  if passages and passages[0].offset == 0:
    title = passages[0].text or ""
    if len(text) == len(title) or (len(text) > len(title) and
                                   text[len(title)] == " " and
                                   passages[1].offset > len(title)):
      return title, text[len(title) + 1:]
  return text, ""


def _one_line(value):
  return _LINE_BREAKS.sub(" ", str(value))


def _pubtator_lines(doc_id, ann, text):
  infons = ann.infons
  extra = [infons[k] for k in sorted(infons, key=lambda k: (len(k), k))
           if k.startswith("column")]
  tail = ([infons["identifier"]] if "identifier" in infons else []) + extra
  lines = []
  for loc in ann.locations:
    mention = ann.text if len(ann.locations) == 1 else text[
        loc.offset:loc.offset + loc.length]
    cols = [doc_id, str(loc.offset), str(loc.offset + loc.length),
            mention or "", infons.get(documents.TYPE, "")] + tail
    lines.append("\t".join(_one_line(c).replace("\t", " ") for c in cols))
  return lines


def format_pubtator(doc, text, new):
  doc_id = _one_line(doc.id)
  title, abstract = _pubtator_head(doc, _one_line(text))
  lines = ["%s|t|%s" % (doc_id, title), "%s|a|%s" % (doc_id, abstract)]
  new_ids = {id(a) for a in new}
  kept = [a for a in documents.all_annotations(doc) if id(a) not in new_ids]
  for ann in kept + list(new):
    lines.extend(_pubtator_lines(doc_id, ann, text))
  for rel in doc.relations:
    if "entity1" in rel.infons and "entity2" in rel.infons:
      lines.append("\t".join(_one_line(c) for c in (
          doc_id, rel.infons.get(documents.TYPE, ""), rel.infons["entity1"],
          rel.infons["entity2"])))
  return "\n".join(lines) + "\n\n"


def _xml_safe(doc):
  """Replaces characters XML 1.0 cannot hold with spaces, in place."""
  def fix(value):
    return _XML_BAD.sub(" ", value) if isinstance(value, str) else value

  def fix_infons(obj):
    obj.infons = {fix(str(k)): fix(str(v)) for k, v in obj.infons.items()}

  doc.id = fix(str(doc.id))
  fix_infons(doc)
  for passage in doc.passages:
    passage.text = fix(passage.text)
    fix_infons(passage)
    for sentence in passage.sentences:
      sentence.text = fix(sentence.text)
  for ann in documents.all_annotations(doc):
    ann.text = fix(ann.text)
    fix_infons(ann)
  for rel in doc.relations:
    fix_infons(rel)


def format_bioc(doc, text, new):
  del text, new  # the annotations are on the document
  _xml_safe(doc)
  elem = biocxml_encoder.encode_document(doc)
  return etree.tostring(elem, encoding="unicode") + "\n"


def format_bioc_json(doc, text, new):
  del text, new
  return json.dumps(biocjson.toJSON(doc), ensure_ascii=False)


def _bioc_header(info):
  esc = saxutils.escape
  return ("<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n"
          "<!DOCTYPE collection SYSTEM \"BioC.dtd\">\n"
          "<collection><source>%s</source><date>%s</date><key>%s</key>\n" % (
              esc(info["source"]), esc(info["date"]), esc(info["key"])))


def _bioc_json_header(info):
  head = json.dumps({"source": info["source"], "date": info["date"],
                     "key": info["key"], "version": "1.0", "infons": {}},
                    ensure_ascii=False)
  return head[:-1] + ", \"documents\": [\n"


class Format(object):
  """How one output format frames its documents."""

  def __init__(self, document, extension, header=None, separator="",
               footer=""):
    self.document = document
    self.extension = extension
    self.header = header or (lambda info: "")
    self.separator = separator
    self.footer = footer


FORMATS = {
    "jsonl": Format(format_jsonl, ".jsonl"),
    "pubtator": Format(format_pubtator, ".pubtator"),
    "bioc": Format(format_bioc, ".xml", _bioc_header, "", "</collection>\n"),
    "bioc_json": Format(format_bioc_json, ".json", _bioc_json_header, ",\n",
                        "\n]}\n"),
}


def collection_info(input_path, source="BioALBERT bio.serving.tag"):
  """source/date/key of a BioC collection; the date is the input's
  modification day (UTC), so a re-run writes the same bytes."""
  try:
    stamp = os.path.getmtime(input_path)
  except OSError:
    stamp = 0
  return {"source": source, "key": "BioC.key",
          "date": time.strftime("%Y%m%d", time.gmtime(stamp))}


def parts_dir(path):
  directory, name = os.path.split(os.path.abspath(path))
  return os.path.join(directory, ".%s.parts" % name)


_MANIFEST = "manifest.json"
_PART_RE = re.compile(r"^part-(\d{6})\.(\d+)$")


class OutputFile(object):
  """An output written atomically, or in resumable parts (module doc).

  Usage: `with OutputFile(...) as out:` skip `out.done` documents of the
  input, then `out.write(doc, text, entities)` per document and
  `out.checkpoint()` wherever a part may end (between model batches).
  """

  def __init__(self, path, output_format, info, resume=False, run=None,
               part_docs=1000, part_seconds=60.0):
    self.path = path
    self.format = FORMATS[output_format]
    self.info = info
    self.resume = resume
    self.run = dict(run or {}, format=output_format)
    self.part_docs = part_docs
    self.part_seconds = part_seconds
    self.done = 0  # documents already in complete parts
    self._count = 0  # documents written, parts included
    self._file = None
    self._tmp = None
    self._part_docs = 0
    self._part_started = 0.0
    self._parts = []

  def __enter__(self):
    if self.resume:
      self._open_parts()
    else:
      self._tmp = file_utils.temp_path(self.path)
      self._file = open(self._tmp, "w", encoding="utf-8", newline="")
      self._file.write(self.format.header(self.info))
    return self

  def _open_parts(self):
    directory = parts_dir(self.path)
    manifest = os.path.join(directory, _MANIFEST)
    if os.path.isdir(directory):
      try:
        with open(manifest, encoding="utf-8") as f:
          old = json.load(f)
      except (OSError, ValueError):
        old = None
      if old != self.run:
        differs = sorted(k for k in set(self.run) | set(old or {})
                         if (old or {}).get(k) != self.run.get(k))
        raise ResumeError(
            "%s holds parts of another run (%s differ): remove it, or "
            "run without --resume" % (directory, ", ".join(differs)))
    else:
      os.makedirs(directory)
      file_utils.atomic_write_json(manifest, self.run, sort_keys=True)
    found = {}
    for name in os.listdir(directory):
      match = _PART_RE.match(name)
      if match:
        found[int(match.group(1))] = (name, int(match.group(2)))
      elif file_utils.is_temp_name(name):
        file_utils.remove_quietly(os.path.join(directory, name))
    for index in range(len(found)):
      if index not in found:
        raise ResumeError("%s: part %d is missing: remove the directory "
                          "to start again" % (directory, index))
      self._parts.append(os.path.join(directory, found[index][0]))
      self.done += found[index][1]
    self._count = self.done

  def write(self, doc, text, entities):
    """Formats one tagged document; returns its new annotations."""
    new = add_entities(doc, entities)
    record = self.format.document(doc, text, new)
    if self._file is None:
      self._start_part()
    if self._count:
      self._file.write(self.format.separator)
    self._file.write(record)
    self._count += 1
    self._part_docs += 1
    return new

  def _start_part(self):
    name = "part-%06d" % len(self._parts)
    self._tmp = file_utils.temp_path(os.path.join(parts_dir(self.path),
                                                  name))
    self._file = open(self._tmp, "w", encoding="utf-8", newline="")
    self._part_docs = 0
    self._part_started = time.time()

  def checkpoint(self, force=False):
    """Ends the current part if it is big or old enough (resume only)."""
    if not self.resume or self._file is None or not self._part_docs:
      return
    if not force and self._part_docs < self.part_docs and (
        time.time() - self._part_started < self.part_seconds):
      return
    self._file.close()
    self._file = None
    final = os.path.join(parts_dir(self.path), "part-%06d.%d" % (
        len(self._parts), self._part_docs))
    os.replace(self._tmp, final)
    self._tmp = None
    self._parts.append(final)
    self.done += self._part_docs

  def __exit__(self, exc_type, unused_exc, unused_tb):
    try:
      if exc_type is None:
        self._finish()
    finally:
      if self._file is not None:
        self._file.close()
      if self._tmp is not None:
        file_utils.remove_quietly(self._tmp)
      if exc_type is not None and self.resume and not self._parts:
        shutil.rmtree(parts_dir(self.path), ignore_errors=True)  # nothing done

  def _finish(self):
    if not self.resume:
      self._file.write(self.format.footer)
      self._file.close()
      self._file = None
      os.chmod(self._tmp, 0o666 & ~_umask())
      os.replace(self._tmp, self.path)
      self._tmp = None
      return
    self.checkpoint(force=True)
    with file_utils.atomic_file(self.path, "wb") as out:
      out.write(self.format.header(self.info).encode("utf-8"))
      for part in self._parts:
        with open(part, "rb") as src:
          shutil.copyfileobj(src, out, 1 << 20)
      out.write(self.format.footer.encode("utf-8"))
    shutil.rmtree(parts_dir(self.path), ignore_errors=True)


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask
