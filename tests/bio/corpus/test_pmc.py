"""PMC reader (bio.corpus.pmc): JATS fixtures, the five real articles, packages."""
import collections
import glob
import io
import os
import tarfile
import xml.sax
import xml.sax.handler

import pytest

from bio.corpus import pmc

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures",
                        "jats")
CAPTIONS = pmc.Options(captions=True, section_titles=False, txt_front=False)

BEFORE = "BEFORE paragraph that precedes the excluded element in the body."
AFTER = "AFTER paragraph that follows the excluded element in the body."


def _fixture(name):
  return os.path.join(FIXTURES, name)


def _read_one(path, options=pmc.DEFAULT_OPTIONS):
  errors = []
  articles = list(pmc.read_file(path, options, errors=errors))
  assert errors == [] and len(articles) == 1
  return articles[0]


def _all_text(article):
  return "\n".join(pmc.article_blocks(article))


# ---------------------------------------------------- exclusion fixtures ---

@pytest.mark.parametrize("name,middle,caption", [
    ("exclude_table.nxml", [], "CAPTION table caption of the isolated table."),
    ("exclude_figure.nxml", [],
     "CAPTION figure caption of the isolated figure."),
    ("exclude_disp_formula.nxml", [], None),
    ("exclude_inline_formula.nxml",
     ["MIDDLE paragraph where stands inside the sentence."], None),
    ("exclude_supplementary.nxml", [], None),
    ("exclude_references.nxml", [], None),
])
def test_each_exclusion_rule_in_isolation(name, middle, caption):
  article = _read_one(_fixture(name))
  assert article.title == "Isolated exclusion fixture for one element type"
  assert article.body == [BEFORE] + middle + [AFTER]
  assert "EXCLUDED" not in _all_text(article)
  assert "CAPTION" not in _all_text(article)
  with_captions = _read_one(_fixture(name), CAPTIONS)
  assert "EXCLUDED" not in _all_text(with_captions)
  if caption:
    # A caption stands where its figure or table stands.
    assert with_captions.body == [BEFORE, caption, AFTER]
  else:
    assert with_captions.body == article.body


def test_full_fixture_reading_order_and_exclusions():
  article = _read_one(_fixture("full_article.nxml"))
  assert article.article_id == "PMC9000001"
  assert article.title == ("Fixture title about Escherichia coli growth in "
                           "minimal media")
  assert [p.split()[0] for p in article.abstract] == ["ABSTRACT_ONE",
                                                      "ABSTRACT_TWO"]
  assert [p.split()[0] for p in article.body] == [
      "BODY_ONE", "BODY_TWO", "BODY_THREE", "BODY_FOUR", "BODY_FIVE",
      "BODY_SIX", "BODY_SEVEN", "BODY_EIGHT"]
  # Inline markup keeps its text; removed elements leave their tail.
  assert article.body[0] == ("BODY_ONE bacteria were grown as described "
                             "before [1] in LB medium.")
  assert article.body[1] == ("BODY_TWO the growth rate was computed from "
                             "optical density.")
  assert "superscript and subscript text. where the constant" in (
      article.body[3])
  text = _all_text(article)
  for marker in ("INLINE_FORMULA", "DISPLAY_FORMULA", "TEX_FORMULA",
                 "FOOTNOTE", "FIGURE_CAPTION", "TABLE_CAPTION", "TABLE_CELL",
                 "TABLE_FOOT", "SUPPLEMENTARY", "ACKNOWLEDGEMENT",
                 "REFERENCE", "FLOATS_GROUP", "GRAPHICAL_ABSTRACT",
                 "COPYRIGHT", "Figure 1", "Table 1", "Introduction",
                 "Nested section title", "Authorname", "Fixture J"):
    assert marker not in text, marker


def test_full_fixture_captions_and_section_titles_by_flag():
  options = pmc.Options(captions=True, section_titles=True, txt_front=False)
  article = _read_one(_fixture("full_article.nxml"), options)
  firsts = [p.split()[0] for p in article.body]
  assert firsts == [
      "Introduction", "BODY_ONE", "BODY_TWO", "FIGURE_CAPTION_TITLE",
      "FIGURE_CAPTION_TEXT", "Nested", "BODY_THREE", "Deeper", "BODY_FOUR",
      "Results", "BODY_FIVE", "TABLE_CAPTION_TEXT", "BODY_SIX", "BODY_SEVEN",
      "BODY_EIGHT", "Supplementary", "FLOATS_GROUP_CAPTION"]
  assert article.abstract[0] == "Background"
  text = _all_text(article)
  for marker in ("INLINE_FORMULA", "TABLE_CELL", "TABLE_FOOT",
                 "SUPPLEMENTARY_MARKER", "REFERENCE", "FOOTNOTE"):
    assert marker not in text, marker


# --------------------------------------------------- the five real ones ---

class _JatsFacts(xml.sax.handler.ContentHandler):
  """Independent facts about a JATS file, gathered with SAX.

  body_starts: the first words of every body <p> that is not inside an
  excluded element (its text before any child element), in document order;
  refs / cells / formulas: texts that must not reach the corpus.
  """

  SKIP = {"table-wrap", "fig", "disp-formula", "inline-formula",
          "supplementary-material", "fn", "ref-list", "table-wrap-foot"}

  def __init__(self):
    super().__init__()
    self.stack = []
    self.body_starts, self.refs, self.cells, self.formulas = [], [], [], []
    self.captions = []
    self._p = None
    self._grab = None

  def startElement(self, name, attrs):
    self.stack.append(name)
    inside_skip = any(n in self.SKIP for n in self.stack[:-1])
    if name == "p" and "body" in self.stack and not inside_skip and (
        self._p is None):
      self._p = []
    elif self._p is not None and len(self._p) < 1:
      self._p.append(None)  # text stops at the first child element
    if name in ("article-title", "td", "tex-math", "math") or (
        name in ("p", "title") and "caption" in self.stack):
      self._grab = (name, [], len(self.stack))

  def characters(self, content):
    if self._p is not None and not self._p:
      self._p_text = getattr(self, "_p_text", "") + content
    if self._grab:
      self._grab[1].append(content)

  def endElement(self, name):
    if name == "p" and self._p is not None and self.stack.count("p") == 1:
      words = " ".join(getattr(self, "_p_text", "").split())
      if len(words) >= 40:
        self.body_starts.append(words[:40])
      self._p = None
      self._p_text = ""
    if self._grab and self._grab[2] == len(self.stack):
      kind, parts = self._grab[0], self._grab[1]
      text = " ".join("".join(parts).split())
      if kind == "article-title" and "ref-list" in self.stack:
        self.refs.append(text)
      elif kind == "td":
        self.cells.append(text)
      elif kind in ("tex-math", "math"):
        self.formulas.append(text)
      elif kind in ("p", "title"):
        self.captions.append(text)
      self._grab = None
    self.stack.pop()


def _real_articles(shared_data_dir):
  paths = sorted(glob.glob(os.path.join(shared_data_dir, "pmc", "*.nxml")))
  assert len(paths) == 5
  return paths


def test_five_real_articles_body_in_order_and_exclusions(shared_data_dir):
  checked_cells = 0
  for path in _real_articles(shared_data_dir):
    facts = _JatsFacts()
    xml.sax.parse(path, facts)
    article = _read_one(path)
    body = "\n".join(article.body)
    text = _all_text(article)
    assert article.title and article.abstract and len(article.body) >= 10
    # Every body paragraph is present, in reading order.
    assert len(facts.body_starts) >= 10, path
    position = -1
    for start in facts.body_starts:
      found = body.find(start, position + 1)
      assert found > position, (path, start)
      position = found
    # References, table cells, formulas and captions are absent.
    assert facts.refs and facts.captions, path
    for ref in facts.refs:
      if len(ref) >= 30:
        assert ref not in text, (path, ref)
    long_cells = [c for c in facts.cells if len(c) >= 30]
    for cell in long_cells:
      assert cell not in body, (path, cell)
    checked_cells += len(long_cells)
    for formula in facts.formulas:
      if len(formula) >= 10:
        assert formula not in text, (path, formula)
    for caption in facts.captions:
      if len(caption) >= 40:
        assert caption[:40] not in text, (path, caption)
    assert not any(line.startswith(("Table ", "Figure ")) and len(line) < 12
                   for line in article.body)
  assert checked_cells >= 10


def test_real_captions_appear_only_with_the_flag(shared_data_dir):
  path = os.path.join(shared_data_dir, "pmc", "pntd.0002065.nxml")
  facts = _JatsFacts()
  xml.sax.parse(path, facts)
  with_captions = _all_text(_read_one(path, CAPTIONS))
  found = [c for c in facts.captions if len(c) >= 40
           and c[:40] in with_captions]
  assert found, facts.captions


# ------------------------------------------------------------- packages ---

def _tar_gz(path, members):
  """Writes a .tar.gz from (name, bytes) pairs."""
  with tarfile.open(path, "w:gz") as tar:
    for name, data in members:
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return str(path)


def _loose_members(paths):
  members = []
  for path in paths:
    with open(path, "rb") as f:
      members.append(("PMC000xxxxxx/" + os.path.basename(path), f.read()))
  return members


def test_package_gives_same_documents_as_loose_files(shared_data_dir,
                                                     tmp_path):
  paths = _real_articles(shared_data_dir) + sorted(
      glob.glob(os.path.join(FIXTURES, "*.nxml")))
  loose = {}
  for path in paths:
    article = _read_one(path)
    loose[article.article_id] = pmc.article_blocks(article)
  members = _loose_members(reversed(paths))
  members.insert(2, ("PMC000xxxxxx/figure.jpg", b"\xff\xd8 not text"))
  package = _tar_gz(tmp_path / "oa_comm_xml.PMC000xxxxxx.tar.gz", members)
  errors = []
  packed = {a.article_id: pmc.article_blocks(a)
            for a in pmc.read_file(package, errors=errors)}
  assert errors == []
  assert packed == loose
  assert len(packed) == len(paths)


def test_bulk_text_form_and_its_packages(tmp_path):
  path = _fixture("PMC9000020.txt")
  article = _read_one(path)
  assert article.body == [
      "Introduction",
      "TXT_BODY_ONE first body paragraph of the plain text article.",
      "TXT_BODY_TWO second body paragraph of the plain text article.",
      "Short line",
      "TXT_BODY_THREE third body paragraph after a blank line."]
  assert "REFS_MARKER" not in _all_text(article)
  assert "FRONT_ABSTRACT" not in _all_text(article)
  front = _read_one(path, pmc.Options(False, False, True))
  assert "FRONT_ABSTRACT" in _all_text(front)
  with open(path, "rb") as f:
    data = f.read()
  package = _tar_gz(tmp_path / "oa_comm_txt.PMC000xxxxxx.tar.gz",
                    [("PMC000xxxxxx/PMC9000020.txt", data),
                     ("PMC000xxxxxx/PMC9000021.txt",
                      b"A text without markers is taken whole.\n")])
  articles = list(pmc.read_file(package))
  assert [a.body for a in articles] == [
      article.body, ["A text without markers is taken whole."]]


def test_bad_members_are_reported_and_the_package_goes_on(tmp_path):
  with open(_fixture("exclude_table.nxml"), "rb") as f:
    good = f.read()
  broken_encoding = good.replace(b"BEFORE paragraph", b"BEFORE \xff\xfe")
  malformed = good.replace(b"</sec>", b"</section>")
  package = _tar_gz(tmp_path / "bad.tar.gz", [
      ("a/one.nxml", good), ("a/encoding.nxml", broken_encoding),
      ("a/malformed.nxml", malformed), ("a/empty.nxml", b""),
      ("a/bad.txt", b"caf\xe9 in latin-1\n"), ("a/two.nxml", good)])
  errors, skipped = [], collections.Counter()
  articles = list(pmc.read_file(package, skipped=skipped, errors=errors))
  assert len(articles) == 2
  reasons = {e["member"]: e["reason"] for e in errors}
  assert set(reasons) == {"a/encoding.nxml", "a/malformed.nxml",
                          "a/empty.nxml", "a/bad.txt"}
  assert "invalid token" in reasons["a/encoding.nxml"]
  assert "line" in reasons["a/malformed.nxml"]
  assert reasons["a/empty.nxml"] == "empty file"
  assert "UTF-8" in reasons["a/bad.txt"]
  assert all(e["file"] == package for e in errors)
  assert skipped == {"bad_record": 4}


def test_truncated_package_keeps_earlier_members(shared_data_dir, tmp_path):
  members = _loose_members(_real_articles(shared_data_dir))
  package = _tar_gz(tmp_path / "full.tar.gz", members)
  with open(package, "rb") as f:
    data = f.read()
  cut = tmp_path / "cut.tar.gz"
  cut.write_bytes(data[:len(data) * 3 // 4])
  errors, skipped = [], collections.Counter()
  articles = list(pmc.read_file(str(cut), skipped=skipped, errors=errors))
  assert 1 <= len(articles) < 5
  assert len(errors) == 1 and "truncated or corrupt package" in (
      errors[0]["reason"])
  assert skipped == {"bad_file": 1}
  empty = tmp_path / "empty.tar.gz"
  empty.write_bytes(b"")
  errors = []
  assert list(pmc.read_file(str(empty), errors=errors)) == []
  assert "empty file" in errors[0]["reason"]


def test_loose_bad_files(tmp_path):
  for name, data, reason in (
      ("empty.nxml", b"", "empty file"),
      ("notjats.xml", b"<html><p>no</p></html>", "not a JATS article"),
      ("broken.nxml", b"<article><body><p>x</body></article>",
       "malformed XML")):
    path = tmp_path / name
    path.write_bytes(data)
    errors = []
    assert list(pmc.read_file(str(path), errors=errors)) == []
    assert reason in errors[0]["reason"], errors
    assert errors[0]["file"] == str(path)
