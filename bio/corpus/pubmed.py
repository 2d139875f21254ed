"""Streaming reader for PubMed/MEDLINE XML (annual baseline and daily updates).

Files are `PubmedArticleSet` documents, gzip-compressed or plain (detected
from the first bytes, not the name). Articles are parsed one at a time with
`xml.etree.ElementTree.iterparse` and cleared once read, so memory stays flat
however large the file.

What a document holds: the PMID, `ArticleTitle` and every
`Abstract/AbstractText` in file order. Inline markup (<i>, <sup>, <sub>,
<b>, ...) keeps its text. A structured abstract's `Label`s ("BACKGROUND",
"METHODS", ...) are headings, not prose, so by default they are left out;
`article_blocks(..., include_labels=True)` writes them as "LABEL: text".
`OtherAbstract` (translations, plain-language summaries) and
`CopyrightInformation` are not part of the abstract. An article without any
non-empty AbstractText is skipped as "no_abstract"; `PubmedBookArticle`
records are skipped as "book_article".

Update semantics (baseline + daily updates hold each PMID once): files are
taken in sorted file-name order (update files continue the baseline's
numbering). A cheap first pass (`index_file`, expat handlers only) lists each
file's PMIDs by position and its `DeleteCitation` PMIDs; `build_plan` then
sorts all events and keeps, for every PMID, only its last event: a later
record replaces an earlier one ("superseded") and a later DeleteCitation
removes it ("deleted"). The plan is a small per-file map position -> reason
that the second pass (`read_file`) applies; both passes read the same bytes
through the same expat parser, so positions agree even in a damaged file.
The `Version` attribute of PMID is ignored: the last record of a PMID wins.
"""
import array
import collections
import os
import xml.etree.ElementTree as ET
from xml.parsers import expat
import zlib

import numpy as np

from bio.text import clean

PubmedArticle = collections.namedtuple("PubmedArticle",
                                       ["pmid", "title", "sections"])
FileIndex = collections.namedtuple("FileIndex",
                                   ["pmids", "deletions", "error"])

NO_PMID = -1
_CHUNK = 1 << 16


class InputError(Exception):
  """A file that cannot be read at all (missing, empty, not XML)."""


class SafeReader(object):
  """A binary stream over a plain or gzip file that never raises on read.

  Gzip data is inflated chunk by chunk with zlib, so a truncated or corrupt
  file yields every byte that can be recovered before the damage, then ends;
  `error` says why. What a consumer sees does not depend on the sizes it
  asks for, so two passes over a damaged file see the same records.
  """

  def __init__(self, path):
    self.path = path
    self.error = None
    self._raw = open(path, "rb")
    self.raw_file = self._raw
    magic = self._raw.read(2)
    self._raw.seek(0)
    self.compressed = magic == b"\x1f\x8b"
    self._inflater = zlib.decompressobj(wbits=31)
    self._in_member = False
    self._pending = b""
    self._buffer = b""
    self._eof = False
    self.bytes_read = 0

  def _inflate(self):
    """Inflates at most one chunk from the pending compressed bytes."""
    data = self._pending
    if not self._in_member and not data.strip(b"\0"):
      self._pending = b""  # zero padding after the last gzip member
      return b""
    self._in_member = True
    out = self._inflater.decompress(data, _CHUNK)
    self._pending = self._inflater.unconsumed_tail
    if self._inflater.eof:  # a member ended; another may follow
      self._pending = self._inflater.unused_data
      self._inflater = zlib.decompressobj(wbits=31)
      self._in_member = False
    return out

  def _fill(self):
    if not self._pending:
      self._pending = self._raw.read(_CHUNK)
      if not self._pending:
        self._eof = True
        if self.compressed and self._in_member:
          self.error = ("truncated gzip data: the file ends inside a "
                        "compressed stream")
        return
    chunk = b""
    if self.compressed:
      try:
        chunk = self._inflate()
      except zlib.error as e:
        self.error = "corrupt gzip data (%s)" % e
        self._eof = True
    else:
      chunk, self._pending = self._pending, b""
    self.bytes_read += len(chunk)
    self._buffer += chunk

  def read(self, size=-1):
    if size is None or size < 0:
      while not self._eof:
        self._fill()
      size = len(self._buffer)
    while len(self._buffer) < size and not self._eof:
      self._fill()
    data, self._buffer = self._buffer[:size], self._buffer[size:]
    return data

  def close(self):
    self._raw.close()

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()


def _check_not_empty(path):
  if os.path.getsize(path) == 0:
    raise InputError("empty file")


def _parse_error_reason(reader, exc):
  if reader.error:
    return reader.error
  if reader.bytes_read == 0:
    return "empty file (no XML after decompression)"
  return "malformed XML: %s" % exc


def _to_pmid(text):
  text = (text or "").strip()
  return int(text) if text.isdigit() else NO_PMID


def index_file(path):
  """First pass: PMIDs of complete articles by position, and deletions.

  Returns:
    FileIndex(pmids, deletions, error): `pmids[i]` is the PMID of the i-th
    `PubmedArticle` (NO_PMID if unreadable), an array.array of int64;
    `deletions` is a list of (articles_seen_before, pmid), one per PMID in a
    DeleteCitation; `error` is None or why the file ended early (what came
    before still counts).
  """
  pmids, deletions = [], []
  try:
    _check_not_empty(path)
  except (InputError, OSError) as e:
    return _file_index(pmids, deletions, str(e))
  state = {"depth": 0, "kind": None, "parent": None, "pmid": NO_PMID,
           "text": None}
  root_ok = [True]

  def start(name, unused_attrs):
    state["depth"] += 1
    depth = state["depth"]
    if depth == 1:
      root_ok[0] = name == "PubmedArticleSet"
    elif depth == 2:
      state["kind"] = name
      state["pmid"] = NO_PMID
    elif depth == 3:
      state["parent"] = name
    if name == "PMID" and root_ok[0] and (
        (state["kind"] == "PubmedArticle" and depth == 4 and
         state["parent"] == "MedlineCitation") or
        (state["kind"] == "DeleteCitation" and depth == 3)):
      state["text"] = []

  def end(name):
    depth = state["depth"]
    state["depth"] -= 1
    if state["text"] is not None and name == "PMID":
      pmid = _to_pmid("".join(state["text"]))
      state["text"] = None
      if state["kind"] == "DeleteCitation":
        if pmid != NO_PMID:
          deletions.append((len(pmids), pmid))
      elif state["pmid"] == NO_PMID:
        state["pmid"] = pmid
    if depth == 2 and name == "PubmedArticle" and root_ok[0]:
      pmids.append(state["pmid"])

  def chars(data):
    if state["text"] is not None:
      state["text"].append(data)

  parser = expat.ParserCreate()
  parser.buffer_text = True
  parser.StartElementHandler = start
  parser.EndElementHandler = end
  parser.CharacterDataHandler = chars
  error = None
  with SafeReader(path) as reader:
    try:
      while True:
        data = reader.read(_CHUNK)
        if not data:
          break
        parser.Parse(data, False)
      parser.Parse(b"", True)
    except expat.ExpatError as e:
      error = _parse_error_reason(reader, e)
    if error is None and reader.error:
      error = reader.error
  if error is None and not root_ok[0]:
    error = "not a PubmedArticleSet file"
  return _file_index(pmids, deletions, error)


def _file_index(pmids, deletions, error):
  # A compact array of Python ints: the baseline has ~36M PMIDs, and the
  # items stay plain ints for callers that use them as keys.
  return FileIndex(array.array("q", pmids), deletions, error)


def build_plan(indexes):
  """Which records to drop so that each PMID is kept once, at its last event.

  Args:
    indexes: FileIndex per file, in processing (sorted file name) order.

  Returns:
    A list (one per file) of dicts position -> "superseded" | "deleted".
  """
  pmid_parts, file_parts, key_parts, kind_parts = [], [], [], []

  def add(f, pmids, keys, kind):
    pmid_parts.append(pmids)
    key_parts.append(keys)
    kind_parts.append(np.full(len(pmids), kind, dtype=np.int8))
    file_parts.append(np.full(len(pmids), f, dtype=np.int32))

  for f, index in enumerate(indexes):
    pmids = np.asarray(index.pmids, dtype=np.int64)
    positions = np.arange(len(pmids), dtype=np.int64)
    known = pmids != NO_PMID
    # Article at position p has key 2p+1; a deletion seen after k articles
    # has key 2k, so it sorts after article k-1 and before article k.
    add(f, pmids[known], 2 * positions[known] + 1, 1)
    deleted = np.asarray(index.deletions, dtype=np.int64).reshape(-1, 2)
    if len(deleted):
      add(f, deleted[:, 1], 2 * deleted[:, 0], 0)
  plan = [dict() for _ in indexes]
  if not sum(len(p) for p in pmid_parts):
    return plan  # no record has a PMID: nothing to deduplicate
  pmid = np.concatenate(pmid_parts)
  key = np.concatenate(key_parts)
  kind = np.concatenate(kind_parts)
  fidx = np.concatenate(file_parts)
  order = np.lexsort((key, fidx, pmid))
  pmid, key, kind, fidx = pmid[order], key[order], kind[order], fidx[order]
  last = np.ones(len(pmid), dtype=bool)
  last[:-1] = pmid[1:] != pmid[:-1]
  group = np.cumsum(np.r_[True, pmid[1:] != pmid[:-1]]) - 1
  winner_kind = kind[last][group]
  dropped = np.nonzero((kind == 1) & ~last)[0]
  for i in dropped:
    reason = "superseded" if winner_kind[i] == 1 else "deleted"
    plan[int(fidx[i])][int((key[i] - 1) // 2)] = reason
  return plan


def _text(elem):
  return clean.normalize_whitespace("".join(elem.itertext()))


def _parse_article(elem):
  citation = elem.find("MedlineCitation")
  if citation is None:
    return None
  pmid = _to_pmid(citation.findtext("PMID"))
  article = citation.find("Article")
  title = ""
  sections = []
  if article is not None:
    title_elem = article.find("ArticleTitle")
    if title_elem is not None:
      title = _text(title_elem)
    for abstract_text in article.findall("Abstract/AbstractText"):
      text = _text(abstract_text)
      if text:
        sections.append((abstract_text.get("Label") or "", text))
  return PubmedArticle(pmid, title, sections)


def read_file(path, drop=None, skipped=None, errors=None, progress=None):
  """Second pass: yields PubmedArticle for every kept article with an abstract.

  Args:
    path: a PubMed XML file, gzip or plain.
    drop: dict position -> reason from `build_plan` (None: keep all).
    skipped: a collections.Counter that receives skip reasons.
    errors: a list that receives {"file", "reason"} for a damaged file; the
      complete articles before the damage are still yielded.
    progress: optional object whose `.raw` is set to the open file.
  """
  drop = drop or {}
  skipped = skipped if skipped is not None else collections.Counter()
  errors = errors if errors is not None else []
  try:
    _check_not_empty(path)
  except (InputError, OSError) as e:
    errors.append({"file": path, "reason": str(e)})
    skipped["bad_file"] += 1
    return
  with SafeReader(path) as reader:
    if progress is not None:
      progress.raw = reader.raw_file
    position = 0
    depth = 0
    root = None
    try:
      for event, elem in ET.iterparse(reader, events=("start", "end")):
        if event == "start":
          depth += 1
          if root is None:
            root = elem
            if elem.tag != "PubmedArticleSet":
              errors.append({"file": path,
                             "reason": "not a PubmedArticleSet file"})
              skipped["bad_file"] += 1
              return
          continue
        depth -= 1
        if depth != 1:
          continue
        if elem.tag == "PubmedArticle":
          reason = drop.get(position)
          position += 1
          if reason:
            skipped[reason] += 1
          else:
            article = _parse_article(elem)
            if article is None:
              skipped["no_citation"] += 1
            elif not article.sections:
              skipped["no_abstract"] += 1
            else:
              yield article
        elif elem.tag == "PubmedBookArticle":
          skipped["book_article"] += 1
        root.clear()
    except ET.ParseError as e:
      errors.append({"file": path, "reason": _parse_error_reason(reader, e)})
      skipped["bad_file"] += 1
      return
    if reader.error:
      errors.append({"file": path, "reason": reader.error})
      skipped["bad_file"] += 1


def article_blocks(article, include_labels=False):
  """The text blocks of a document: the title, then each abstract section."""
  blocks = [article.title] if article.title else []
  for label, text in article.sections:
    blocks.append("%s: %s" % (label, text) if include_labels and label
                  else text)
  return blocks
