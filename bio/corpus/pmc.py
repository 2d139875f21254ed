"""Reader for PMC Open Access full texts: JATS .nxml and the bulk .txt form.

Inputs: a loose JATS file (`.nxml`, `.xml`), a loose text file (`.txt`), or
an OA bulk package (`.tar.gz`, `.tgz`, `.tar`) whose members are read one by
one straight from the compressed stream (`tarfile` stream mode), never
unpacked to disk. Package members other than articles (images, PDFs) are
passed over.

A JATS article becomes: its title, every abstract (author summaries
included; `graphical`, `teaser` and `toc` abstracts left out), then the body
paragraphs in reading order, nested sections included. Left out wherever they
are: tables, figures, formulas (`disp-formula`, `inline-formula`, MathML,
TeX), supplementary material, footnotes, labels, code, the whole `back`
matter (references, acknowledgements, appendices) and sub-articles (peer
reviews). Section titles are headings, left out unless
`section_titles=True`. Figure and table captions are left out unless
`captions=True`; then each caption follows the paragraph that holds its
figure or table (or stands where the figure stands), and captions from the
article's `floats-group` come after the body.

Inline markup keeps its text (<italic>, <sup>, <xref>, <ext-link>, ...); a
paragraph nested in another (a list inside a <p>) becomes its own line.

The bulk `.txt` form: when the file has the `==== Body` / `==== Refs`
markers of PMC's text packages, the lines between them are the document;
the `==== Front` part mixes title and abstract with journal metadata, author
lists and affiliations, so it is only taken with `txt_front=True`
(prefer the XML packages when title and abstract matter). Without markers
the whole file is used.
"""
import collections
import os
import tarfile
import xml.etree.ElementTree as ET
import zlib

from bio.text import clean

PmcArticle = collections.namedtuple(
    "PmcArticle", ["article_id", "title", "abstract", "body"])
Options = collections.namedtuple(
    "Options", ["captions", "section_titles", "txt_front"])
DEFAULT_OPTIONS = Options(captions=False, section_titles=False,
                          txt_front=False)

JATS_SUFFIXES = (".nxml", ".xml")
TXT_SUFFIXES = (".txt",)
PACKAGE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

_FLOATS = frozenset(["fig", "fig-group", "table-wrap", "table-wrap-group"])
_EXCLUDED = frozenset([
    "table", "disp-formula", "disp-formula-group", "inline-formula", "math",
    "tex-math", "chem-struct-wrap", "supplementary-material",
    "inline-supplementary-material", "media", "graphic", "inline-graphic",
    "alternatives", "ref-list", "ref", "fn", "fn-group", "table-wrap-foot",
    "label", "object-id", "code", "preformat", "array", "sub-article",
    "response", "caption", "processing-meta", "floats-group", "back",
    "attrib", "permissions",
])
_SKIPPED_ABSTRACTS = frozenset(["graphical", "teaser", "toc"])
_PARAGRAPH = object()  # a paragraph break inside the collected inline text


class JatsError(ValueError):
  """An article that cannot be read; the message says why."""


def _local(tag):
  return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _has_direct_text(elem):
  if elem.text and elem.text.strip():
    return True
  return any(child.tail and child.tail.strip() for child in elem)


def _collect_inline(elem, parts, floats):
  """Text of `elem` minus excluded elements; nested paragraphs break lines."""
  if elem.text:
    parts.append(elem.text)
  for child in elem:
    name = _local(child.tag)
    if name in _FLOATS:
      floats.append(child)
    elif name in _EXCLUDED:
      pass
    elif name in ("p", "list-item", "disp-quote", "statement", "def-item",
                  "boxed-text", "list", "sec", "title"):
      parts.append(_PARAGRAPH)
      _collect_inline(child, parts, floats)
      parts.append(_PARAGRAPH)
    else:
      _collect_inline(child, parts, floats)
    if child.tail:
      parts.append(child.tail)


def _paragraphs(elem):
  """(paragraph strings, float elements) of one paragraph-like element."""
  parts, floats = [], []
  _collect_inline(elem, parts, floats)
  paragraphs, current = [], []
  for part in parts + [_PARAGRAPH]:
    if part is _PARAGRAPH:
      text = clean.normalize_whitespace("".join(current))
      if text:
        paragraphs.append(text)
      current = []
    else:
      current.append(part)
  return paragraphs, floats


def _caption_paragraphs(float_elem):
  out = []
  for elem in float_elem.iter():
    if _local(elem.tag) == "caption":
      for child in elem:
        if _local(child.tag) in ("title", "p"):
          out.extend(_paragraphs(child)[0])
  return out


def _walk(elem, blocks, options):
  """Appends the reading-order paragraphs under a container element."""
  for child in elem:
    name = _local(child.tag)
    if name in _FLOATS:
      if options.captions:
        blocks.extend(_caption_paragraphs(child))
    elif name in _EXCLUDED:
      continue
    elif name == "title":
      if options.section_titles:
        blocks.extend(_paragraphs(child)[0])
    elif name == "p" or _has_direct_text(child):
      paragraphs, floats = _paragraphs(child)
      blocks.extend(paragraphs)
      if options.captions:
        for float_elem in floats:
          blocks.extend(_caption_paragraphs(float_elem))
    else:
      _walk(child, blocks, options)


def _article_id(meta, fallback):
  ids = {}
  if meta is not None:
    for elem in meta.findall("article-id"):
      ids.setdefault(elem.get("pub-id-type"), (elem.text or "").strip())
  if ids.get("pmc"):
    pmcid = ids["pmc"]
    return pmcid if pmcid.upper().startswith("PMC") else "PMC" + pmcid
  for kind in ("pmcid", "pmid", "doi", "publisher-id"):
    if ids.get(kind):
      return "%s:%s" % (kind, ids[kind])
  return fallback


def parse_jats(data, name="article", options=DEFAULT_OPTIONS):
  """Parses one JATS article (bytes or str) into a PmcArticle.

  Raises:
    JatsError: malformed XML, broken encoding, or not an <article>.
  """
  if not data or not data.strip():
    raise JatsError("empty file")
  try:
    root = ET.fromstring(data)
  except ET.ParseError as e:
    raise JatsError("malformed XML: %s" % e) from None
  if _local(root.tag) != "article":
    raise JatsError("not a JATS article (root element <%s>)" %
                    _local(root.tag))
  meta = root.find("front/article-meta")
  title = ""
  abstract = []
  if meta is not None:
    title_elem = meta.find("title-group/article-title")
    if title_elem is not None:
      title = " ".join(_paragraphs(title_elem)[0])
    for abstract_elem in meta.findall("abstract"):
      if abstract_elem.get("abstract-type") in _SKIPPED_ABSTRACTS:
        continue
      _walk(abstract_elem, abstract, options)
  body = []
  body_elem = root.find("body")
  if body_elem is not None:
    _walk(body_elem, body, options)
  if options.captions:
    floats_group = root.find("floats-group")
    if floats_group is not None:
      for float_elem in floats_group:
        if _local(float_elem.tag) in _FLOATS:
          body.extend(_caption_paragraphs(float_elem))
  return PmcArticle(_article_id(meta, name), title, abstract, body)


def parse_txt(data, name="article", options=DEFAULT_OPTIONS):
  """Parses one article of PMC's bulk text form (bytes must be UTF-8)."""
  if isinstance(data, bytes):
    try:
      data = data.decode("utf-8")
    except UnicodeDecodeError as e:
      raise JatsError("broken UTF-8 encoding at byte %d: %s" %
                      (e.start, e.reason)) from None
  if not data.strip():
    raise JatsError("empty file")
  lines = clean.split_lines(data)
  marks = {line.strip(): i for i, line in reversed(list(enumerate(lines)))
           if line.startswith("==== ")}
  front = []
  if "==== Body" in marks:
    start = marks["==== Body"] + 1
    end = marks.get("==== Refs", len(lines))
    if end < start:
      end = len(lines)
    if options.txt_front and "==== Front" in marks:
      front = lines[marks["==== Front"] + 1:marks["==== Body"]]
    body = lines[start:end]
  else:
    body = lines
  return PmcArticle(name, "", [l for l in front if l.strip()],
                    [l for l in body if l.strip()])


def article_blocks(article):
  """The text blocks of a document: title, abstract, body."""
  return ([article.title] if article.title else []) + list(
      article.abstract) + list(article.body)


def _kind(name):
  lower = name.lower()
  if lower.endswith(PACKAGE_SUFFIXES):
    return "package"
  if lower.endswith(JATS_SUFFIXES):
    return "jats"
  if lower.endswith(TXT_SUFFIXES):
    return "txt"
  return None


def is_input_file(path):
  return _kind(os.path.basename(path)) is not None


def _parse_member(data, name, options):
  kind = _kind(name)
  if kind == "jats":
    return parse_jats(data, name, options)
  return parse_txt(data, name, options)


def read_file(path, options=DEFAULT_OPTIONS, skipped=None, errors=None,
              progress=None):
  """Yields PmcArticle for each readable article in a file or package.

  Args:
    path: .nxml/.xml/.txt article or .tar.gz/.tgz/.tar package.
    options: an `Options`.
    skipped: a collections.Counter that receives skip reasons.
    errors: a list that receives {"file", "member"?, "reason"} per bad file
      or bad member; reading goes on with the next member.
    progress: optional object whose `.raw` is set to the open file.
  """
  skipped = skipped if skipped is not None else collections.Counter()
  errors = errors if errors is not None else []
  kind = _kind(os.path.basename(path))
  if kind is None:
    errors.append({"file": path, "reason": "not a PMC input (.nxml, .xml, "
                                           ".txt, .tar.gz, .tgz, .tar)"})
    skipped["bad_file"] += 1
    return
  if kind != "package":
    try:
      with open(path, "rb") as f:
        data = f.read()
      article = _parse_member(data, os.path.basename(path), options)
    except (OSError, JatsError) as e:
      errors.append({"file": path, "reason": str(e)})
      skipped["bad_record"] += 1
      return
    yield article
    return
  member_name = None
  try:
    with open(path, "rb") as raw:
      if progress is not None:
        progress.raw = raw
      if os.fstat(raw.fileno()).st_size == 0:
        raise tarfile.ReadError("empty file")
      with tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
          if not member.isfile() or _kind(member.name) in (None, "package"):
            continue
          member_name = member.name
          data = tar.extractfile(member).read()
          try:
            article = _parse_member(data, member.name, options)
          except JatsError as e:
            errors.append({"file": path, "member": member.name,
                           "reason": str(e)})
            skipped["bad_record"] += 1
            continue
          yield article
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    where = (" after member %s" % member_name) if member_name else ""
    errors.append({"file": path, "reason": "truncated or corrupt package%s "
                                           "(%s)" % (where, e)})
    skipped["bad_file"] += 1
