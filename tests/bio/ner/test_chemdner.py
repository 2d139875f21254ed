"""Tests for bio.ner.chemdner: CHEMDNER standoff -> BC4CHEMD IOB2 files."""
import collections
import json
import os
import subprocess
import sys
import unicodedata

import pytest

from bio.ner import chemdner
from bio.ner import iob
from bio.ner import datasets
from bio.text import sentences as sentence_splitter

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PREFIX = {"train.tsv": "training", "devel.tsv": "development",
          "test.tsv": "evaluation"}
HEAD_DOCS = 40  # first documents of each split, plus the tricky ones


def _visible(text):
  return "".join(c for c in text if not (
      c.isspace() or unicodedata.category(c) in ("Cc", "Cf")))


def _read_raw(raw_dir, prefix):
  """Independent reading: [(pmid, title, abstract)], {(pmid, sec): [ann]}."""
  docs = []
  with open(os.path.join(raw_dir, prefix + ".abstracts.txt"),
            encoding="utf-8") as f:
    for line in f:
      pmid, title, abstract = line.rstrip("\n").split("\t")
      docs.append((pmid, title, abstract))
  anns = collections.defaultdict(list)
  with open(os.path.join(raw_dir, prefix + ".annotations.txt"),
            encoding="utf-8") as f:
    for line in f:
      pmid, sec, start, end, text, cls = line.rstrip("\n").split("\t")
      anns[(pmid, sec)].append((int(start), int(end), text, cls))
  return docs, anns


def _representable(section_anns):
  """Annotations IOB2 can hold: non-empty, not inside/crossing a bigger one.

  When two overlap, the longer wins (the earlier one on a tie).
  """
  keep = []
  for a in section_anns:
    if not a[2].strip():
      continue
    beaten = any(
        b is not a and b[2].strip() and b[0] < a[1] and a[0] < b[1] and
        ((b[1] - b[0], -b[0]) > (a[1] - a[0], -a[0]))
        for b in section_anns)
    if not beaten:
      keep.append(a)
  return sorted(keep)


def _read_blocks(path):
  """Sentences of an output file as [(token, label)] lists, no iob."""
  with open(path, encoding="utf-8") as f:
    blocks = f.read().split("\n\n")
  return [[tuple(line.split("\t")) for line in b.split("\n")]
          for b in blocks if b.strip()]


def _mentions(sentences):
  """[(type, text)] of every B-I* run, read from labels alone."""
  out = []
  for sentence in sentences:
    run = None
    for token, label in sentence + [("", "O")]:
      if label.startswith("I-") and run is not None:
        run[1] += token
        continue
      if run is not None:
        out.append(tuple(run))
      run = [label[2:], token] if label.startswith("B-") else None
  return out


@pytest.fixture(scope="module")
def raw_dir(shared_data_dir):
  path = os.path.join(shared_data_dir, "ner-raw", "chemdner")
  if not os.path.isdir(path):
    pytest.skip("CHEMDNER not found at %s" % path)
  return path


@pytest.fixture(scope="module")
def raw(raw_dir):
  return {name: _read_raw(raw_dir, prefix) for name, prefix in PREFIX.items()}


@pytest.fixture(scope="module")
def subset(raw):
  """The first documents of each split, every document with a nested,
  crossing or empty annotation or with one that the sentence splitter would
  cut, and some with an annotation edge inside a word."""
  pmids = set()
  for docs, anns in raw.values():
    pmids.update(pmid for pmid, _, _ in docs[:HEAD_DOCS])
    doc_text = {pmid: {"T": t, "A": a} for pmid, t, a in docs}
    inside_word = 0
    for (pmid, sec), section in sorted(anns.items()):
      if len(_representable(section)) != len(section):
        pmids.add(pmid)
      body = doc_text[pmid][sec]
      plain = chemdner.sentence_spans(body)  # no entities: splitter only
      if any(not any(s <= a[0] and a[1] <= e for s, e in plain)
             for a in _representable(section)):
        pmids.add(pmid)
      for start, end, _, _ in section:
        cut = (0 < start < len(body) and body[start - 1].isalnum() and
               body[start].isalnum()) or (
                   0 < end < len(body) and body[end - 1].isalnum() and
                   body[end].isalnum())
        if cut and inside_word < 15:
          pmids.add(pmid)
          inside_word += 1
  return pmids


@pytest.fixture(scope="module")
def converted(raw_dir, subset, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("bc4chemd"))
  reports = chemdner.convert_corpus(raw_dir, out, pmids=subset)
  return out, reports


def test_subset_covers_the_tricky_cases(subset, raw):
  def left_out(only_subset):
    return sum(len(s) - len(_representable(s))
               for _, anns in raw.values() for (pmid, _), s in anns.items()
               if pmid in subset or not only_subset)
  # 41 nested/crossing annotations (dev) + 4 empty ones (test).
  assert left_out(True) == left_out(False) == 45
  assert len(subset) < 250


@pytest.mark.parametrize("name", list(PREFIX))
def test_every_annotation_is_one_mention_with_its_text(name, converted, raw,
                                                       subset):
  out_dir, reports = converted
  docs, anns = raw[name]
  docs = [d for d in docs if d[0] in subset]
  sentences = _read_blocks(os.path.join(out_dir, name))

  # Tokens cover every section's visible characters, in order, and each
  # section is a whole number of sentences.
  si = 0
  for pmid, title, abstract in docs:
    for body in (title, abstract):
      want = _visible(body)
      got = ""
      while len(got) < len(want):
        got += "".join(tok for tok, _ in sentences[si])
        si += 1
      assert got == want, (pmid, body[:60])
  assert si == len(sentences)

  expected, left_out = [], 0
  for pmid, _, _ in docs:
    for sec in ("T", "A"):
      section = anns.get((pmid, sec), [])
      keep = _representable(section)
      left_out += len(section) - len(keep)
      expected.extend(("Chemical", _visible(text))
                      for _, _, text, _ in keep)
  assert _mentions(sentences) == expected
  report = reports[name]
  assert report.documents == len(docs)
  assert report.sentences == len(sentences)
  assert report.mentions == len(expected)
  assert report.annotations == len(expected) + left_out
  assert len(report.dropped) + len(report.unplaced) == left_out
  assert {l for s in sentences for _, l in s} <= {"O", "B-Chemical",
                                                  "I-Chemical"}


def test_left_out_annotations_are_reported(converted):
  out_dir, reports = converted
  assert not reports["train.tsv"].dropped and not reports["train.tsv"].unplaced
  assert len(reports["devel.tsv"].dropped) == 41
  assert [why for _, why in reports["test.tsv"].unplaced] == [
      "empty annotation"] * 4
  with open(os.path.join(out_dir, chemdner.STAMP_FILE)) as f:
    stamp = json.load(f)
  assert stamp["subset"] is True
  assert stamp["splits"]["devel.tsv"]["mentions"] == (
      reports["devel.tsv"].mentions)
  assert any("'steroid' overlaps" in d and "development.annotations.txt:" in d
             for d in stamp["splits"]["devel.tsv"]["dropped_overlapping"])
  assert not chemdner.is_current_conversion(out_dir)  # a subset
  # The reader accepts the output.
  assert iob.load_splits(out_dir)["train"]


def test_sentences_follow_the_splitter_unless_an_entity_is_cut(raw, subset):
  merges = 0
  for name in PREFIX:
    docs, anns = raw[name]
    for pmid, title, abstract in (d for d in docs if d[0] in subset):
      for sec, body in (("T", title), ("A", abstract)):
        plain = chemdner.sentence_spans(body)
        # Mapped back onto the text, these are bio.text.sentences' sentences.
        assert [" ".join(body[s:e].split()) for s, e in plain] == (
            sentence_splitter.split_sentences(body))
        ents = [chemdner.Entity(s, e, c, t, "") for s, e, t, c in
                anns.get((pmid, sec), []) if t]
        kept, _ = chemdner.resolve_overlaps(ents)
        spans = chemdner.sentence_spans(body, kept)
        # Each sentence is a run of the splitter's; a run of several exists
        # only because an entity would otherwise be cut.
        pi = 0
        for start, end in spans:
          first = pi
          while plain[pi][1] < end:
            pi += 1
          assert (plain[first][0], plain[pi][1]) == (start, end)
          if pi > first:
            merges += 1
            assert any(not any(s <= e.start and e.end <= t for s, t in plain)
                       and start <= e.start and e.end <= end for e in kept)
          pi += 1
        assert pi == len(plain)
        for ent in kept:
          assert any(s <= ent.start and ent.end <= e for s, e in spans)
  assert merges == 1  # CHEMDNER has one such case, in the development set


def test_keep_classes(raw_dir, raw, tmp_path):
  docs, anns = raw["train.tsv"]
  pmids = {pmid for pmid, _, _ in docs[:15]}
  chemdner.convert_corpus(raw_dir, str(tmp_path), keep_classes=True,
                          pmids=pmids)
  got = _mentions(_read_blocks(str(tmp_path / "train.tsv")))
  want = [(cls.replace(" ", "_"), _visible(text))
          for pmid, _, _ in docs[:15] for sec in ("T", "A")
          for _, _, text, cls in _representable(anns.get((pmid, sec), []))]
  assert got == want
  assert len({t for t, _ in got}) > 2


# ---------------------------------------------------------------------------
# Standoff on crafted text.


def _ents(text, *pieces):
  out = []
  for piece, nth in pieces:
    start = -1
    for _ in range(nth + 1):
      start = text.index(piece, start + 1)
    out.append(chemdner.Entity(start, start + len(piece), "X", piece, "t"))
  return out


def _labels(sentences):
  return [[(tok, label) for tok, _, _, label in s] for s in sentences]


def test_entity_edges_inside_words_split_the_token():
  text = "Aflatoxins and 14C-glucose rose."
  ents = _ents(text, ("Aflatoxin", 0), ("14C", 0), ("glucose", 0))
  sents, placed, unplaced = chemdner.convert_text(text, ents)
  assert _labels(sents) == [[
      ("Aflatoxin", "B-Chemical"), ("s", "O"), ("and", "O"),
      ("14C", "B-Chemical"), ("-", "O"), ("glucose", "B-Chemical"),
      ("rose", "O"), (".", "O")]]
  assert len(placed) == 3 and not unplaced
  for tok, start, end, _ in sents[0]:
    assert text[start:end] == tok


def test_sentence_boundary_inside_an_entity_is_dropped():
  text = "We added NaCl. Water was then heated. Then nothing."
  assert len(chemdner.sentence_spans(text)) == 3
  ents = _ents(text, ("NaCl. Water", 0))
  sents, placed, _ = chemdner.convert_text(text, ents, entity_type=None)
  assert len(sents) == 2
  assert _labels(sents)[0][1:6] == [
      ("added", "O"), ("NaCl", "B-X"), (".", "I-X"), ("Water", "I-X"),
      ("was", "O")]
  assert len(placed) == 1


def test_adjacent_and_unplaceable_entities():
  text = "NaCl/KCl\nand MgCl2 ."
  ents = _ents(text, ("NaCl", 0), ("KCl", 0), ("MgCl2", 0))
  ents.append(chemdner.Entity(8, 9, "X", "\n", "t"))  # only whitespace
  kept, dropped = chemdner.resolve_overlaps(ents)
  assert not dropped
  sents, placed, unplaced = chemdner.convert_text(text, kept)
  assert _labels(sents) == [
      [("NaCl", "B-Chemical"), ("/", "O"), ("KCl", "B-Chemical")],
      [("and", "O"), ("MgCl2", "B-Chemical"), (".", "O")]]
  assert len(placed) == 3 and [e.text for e in unplaced] == ["\n"]


def test_resolve_overlaps_keeps_outer_span():
  text = "steroid hormone receptor"
  ents = _ents(text, ("steroid", 0), ("steroid hormone", 0),
               ("hormone receptor", 0))
  kept, dropped = chemdner.resolve_overlaps(ents)
  assert [e.text for e in kept] == ["steroid hormone"]
  assert sorted(e.text for e, _ in dropped) == ["hormone receptor",
                                                "steroid"]


# ---------------------------------------------------------------------------
# Bad input, CLI, cache.


def _fake_corpus(directory, abstracts, annotations):
  os.makedirs(directory, exist_ok=True)
  for prefix in PREFIX.values():
    with open(os.path.join(directory, prefix + ".abstracts.txt"), "w",
              encoding="utf-8") as f:
      f.write(abstracts)
    with open(os.path.join(directory, prefix + ".annotations.txt"), "w",
              encoding="utf-8") as f:
      f.write(annotations)
  return directory


GOOD_ABS = "1\tAspirin works.\tWe used NaCl. It dissolved.\n"
GOOD_ANN = "1\tT\t0\t7\tAspirin\tTRIVIAL\n1\tA\t8\t12\tNaCl\tFORMULA\n"


@pytest.mark.parametrize("abstracts,annotations,where,problem", [
    ("1\tonly title\n", "", "abstracts.txt:1", "found 2 column"),
    (GOOD_ABS + GOOD_ABS, "", "abstracts.txt:2", "duplicate PMID 1"),
    (GOOD_ABS, GOOD_ANN + "1\tA\t8\t12\tKCl\tFORMULA\n", "annotations.txt:3",
     "does not match"),
    (GOOD_ABS, "1\tA\t8\t99\tNaCl\tFORMULA\n", "annotations.txt:1",
     "outside the A text"),
    (GOOD_ABS, "2\tA\t8\t12\tNaCl\tFORMULA\n", "annotations.txt:1",
     "PMID 2 is not in the abstracts"),
    (GOOD_ABS, "1\tX\t8\t12\tNaCl\tFORMULA\n", "annotations.txt:1",
     "T or A"),
    (GOOD_ABS, "1\tA\t8\tx\tNaCl\tFORMULA\n", "annotations.txt:1",
     "non-integer"),
])
def test_bad_input_names_file_and_line(tmp_path, abstracts, annotations,
                                       where, problem):
  src = _fake_corpus(str(tmp_path / "in"), abstracts, annotations)
  out = str(tmp_path / "out")
  with pytest.raises(chemdner.ChemdnerFormatError) as err:
    chemdner.convert_corpus(src, out)
  assert ("training.%s: " % where) in str(err.value)
  assert problem in str(err.value)
  assert not os.path.exists(out)


def test_background_abstracts_are_left_out_of_test(tmp_path):
  two = GOOD_ABS + "2\tBackground.\tNo chemicals \u200b here.\n"
  src = _fake_corpus(str(tmp_path / "in"), two, GOOD_ANN)
  out = tmp_path / "out"
  reports = chemdner.convert_corpus(src, str(out))
  assert reports["train.tsv"].documents == 2
  assert reports["train.tsv"].sentences == 5
  with open(os.path.join(src, chemdner.TEST_LABEL_FILE), "w") as f:
    f.write("1\tY\n2\tN\n")
  reports = chemdner.convert_corpus(src, str(out))
  assert reports["train.tsv"].documents == 2
  assert reports["test.tsv"].documents == 1
  assert len(iob.read_iob_file(str(out / "test.tsv"))) == 3


def test_text_without_visible_characters():
  sents, placed, unplaced = chemdner.convert_text("\u200b \ufeff\n.", [])
  assert _labels(sents) == [[(".", "O")]]
  assert chemdner.convert_text("", []) == ([], [], [])


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "bio.ner.chemdner"] + list(args),
                        capture_output=True, text=True, env=env, cwd=ROOT,
                        check=False)


def test_cli_success_and_failure(tmp_path):
  good = _fake_corpus(str(tmp_path / "good"), GOOD_ABS, GOOD_ANN)
  out = tmp_path / "out"
  result = _run_cli("--input_dir=" + good, "--output_dir=" + str(out))
  assert result.returncode == 0, result.stderr
  assert "train.tsv" in result.stdout
  assert (out / "train.tsv").read_text(encoding="utf-8") == (
      "Aspirin\tB-Chemical\nworks\tO\n.\tO\n\nWe\tO\nused\tO\n"
      "NaCl\tB-Chemical\n.\tO\n\nIt\tO\ndissolved\tO\n.\tO\n\n")
  # A later error in the evaluation split: exit 1, nothing written.
  bad = _fake_corpus(str(tmp_path / "bad"), GOOD_ABS, GOOD_ANN)
  with open(os.path.join(bad, "evaluation.annotations.txt"), "a",
            encoding="utf-8") as f:
    f.write("1\tA\t0\t2\tzz\tFORMULA\n")
  out2 = tmp_path / "out2"
  result = _run_cli("--input_dir=" + bad, "--output_dir=" + str(out2))
  assert result.returncode == 1
  assert "evaluation.annotations.txt:3" in result.stderr
  assert not out2.exists()


def test_registry_converts_bc4chemd_into_cache_once(raw, tmp_path):
  # A small CHEMDNER-format copy (5 documents per split) as the data dir.
  data = tmp_path / "data"
  src = data / "ner-raw" / "chemdner"
  src.mkdir(parents=True)
  for name, prefix in PREFIX.items():
    docs, anns = raw[name]
    docs = docs[:5]
    with open(src / (prefix + ".abstracts.txt"), "w", encoding="utf-8") as f:
      f.writelines("%s\t%s\t%s\n" % d for d in docs)
    with open(src / (prefix + ".annotations.txt"), "w",
              encoding="utf-8") as f:
      for pmid, _, _ in docs:
        for sec in ("T", "A"):
          for s, e, text, cls in anns.get((pmid, sec), []):
            f.write("%s\t%s\t%d\t%d\t%s\t%s\n" % (pmid, sec, s, e, text, cls))
  cache = tmp_path / "cache"
  path = datasets.resolve_dataset_dir("BC4CHEMD", str(data),
                                          cache_dir=str(cache))
  assert path == str(cache / "BC4CHEMD")
  assert chemdner.is_current_conversion(path)
  splits = iob.load_splits(path)
  assert len(splits["test"]) > 10
  mtime = os.path.getmtime(os.path.join(path, "train.tsv"))
  assert datasets.resolve_dataset_dir("bc4chemd", str(data),
                                          cache_dir=str(cache)) == path
  assert os.path.getmtime(os.path.join(path, "train.tsv")) == mtime
  # Without the raw corpus and without a cached copy: a clear error.
  with pytest.raises(FileNotFoundError, match="--download=BC4CHEMD"):
    datasets.resolve_dataset_dir("BC4CHEMD", str(tmp_path / "data2"),
                                     cache_dir=str(tmp_path / "cache2"))
