"""Tests for bio.ner_data, bio.ner_registry and bio.word_tokenize."""
import gzip
import logging
import os
import random
import re
import unicodedata

import pytest
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Entities

from bio import ner_data
from bio import ner_registry
from bio import word_tokenize

# Datasets shipped in token-per-line form (BC4CHEMD is converted: see
# tests/test_chemdner.py).
SHIPPED = [name for name, info in ner_registry.DATASETS.items()
           if not info.get("converter")]


def _write(path, text):
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(text)
  return str(path)


def _raw_counts(path):
  """Sentences and mentions straight from the file, as the data README does.

  Sentences = non-empty blank-line-separated blocks once -DOCSTART- lines are
  removed; mentions = labels starting with B.
  """
  with open(path, encoding="utf-8") as f:
    text = f.read()
  sentences = mentions = tokens = 0
  for block in text.split("\n\n"):
    rows = [line.split("\t") for line in block.split("\n")
            if line and not line.startswith("-DOCSTART-")]
    if rows:
      sentences += 1
      tokens += len(rows)
      mentions += sum(1 for _, label in rows if label.startswith("B"))
  return sentences, mentions, tokens


@pytest.fixture(scope="module")
def shipped_files(ner_dir):
  """dataset -> {split: IobFile}, each real file parsed once."""
  out = {}
  for name in SHIPPED:
    path = ner_registry.resolve_dataset_dir(name, os.path.dirname(ner_dir))
    out[name] = ner_data.load_split_files(path)
  return out


# ---------------------------------------------------------------------------
# The real datasets.


@pytest.mark.parametrize("name", SHIPPED)
def test_real_counts_match_raw_file_and_registry(name, shipped_files):
  info = ner_registry.DATASETS[name]
  files = shipped_files[name]
  assert set(files) == set(info["sentences"])
  for split, iob_file in files.items():
    raw_sentences, raw_mentions, raw_tokens = _raw_counts(iob_file.path)
    got_mentions = ner_data.count_mentions(iob_file.sentences)
    assert len(iob_file.sentences) == raw_sentences, (name, split)
    assert got_mentions == raw_mentions, (name, split)
    assert sum(len(s.tokens) for s in iob_file.sentences) == raw_tokens
    assert raw_sentences == info["sentences"][split], (name, split)
    assert raw_mentions == info["mentions"][split], (name, split)
    # The shared copies are already IOB2: nothing to repair.
    assert not iob_file.repairs, (name, split, iob_file.repairs)
  counts = {split: (len(f.sentences), ner_data.count_mentions(f.sentences))
            for split, f in files.items()}
  assert ner_registry.check_counts(name, counts) == []


def test_real_label_sets(shipped_files):
  jnlpba = shipped_files["JNLPBA"]
  assert ner_data.get_label_list(jnlpba["train"].sentences) == [
      "O", "B-DNA", "B-RNA", "B-cell_line", "B-cell_type", "B-protein",
      "I-DNA", "I-RNA", "I-cell_line", "I-cell_type", "I-protein"]
  # -DOCSTART- lines are skipped, never tokens (JNLPBA has 1,800 in train).
  assert jnlpba["train"].num_docstart == 1800
  assert all(ner_data.DOCSTART not in s.tokens
             for s in jnlpba["train"].sentences)
  for name in SHIPPED:
    types = ner_registry.DATASETS[name]["entity_types"]
    want = {"O"} | ({p + "-" + t for p in "BI" for t in types} if types
                    else {"B", "I"})
    assert set(ner_data.get_label_list(shipped_files[name]["train"]
                                       .sentences)) == want, name


def test_collapse_types_on_real_jnlpba(shipped_files, ner_dir):
  typed = shipped_files["JNLPBA"]["dev"].sentences
  path = os.path.join(ner_dir, "JNLPBA", "devel.tsv")
  collapsed = ner_data.read_iob_file(path, collapse_types=True)
  assert ner_data.get_label_list(collapsed) == ["O", "B", "I"]
  assert [s.tokens for s in collapsed] == [s.tokens for s in typed]
  for c, t in zip(collapsed, typed):
    assert c.labels == [l.split("-")[0] for l in t.labels]
  assert ner_data.count_mentions(collapsed) == 4551


def test_load_splits_checks_counts_against_registry(ner_dir, caplog):
  """The real files match the registry, and dev/test use train's labels."""
  caplog.set_level(logging.INFO)
  splits = ner_data.load_splits(os.path.join(ner_dir, "NCBI-disease"))
  assert list(splits) == ["train", "dev", "test"]
  assert len(splits["test"]) == 940
  assert "counts match the registry entry for NCBI-disease" in caplog.text
  assert "never occurs in the training data" not in caplog.text


@pytest.mark.parametrize("name", ["NCBI-disease", "BC5CDR-chem", "BC2GM",
                                  "Species-800"])
def test_word_tokenizer_reproduces_the_corpus_tokens(name, shipped_files):
  """Re-tokenizing a sentence's text gives back the corpus's own tokens."""
  for sentence in shipped_files[name]["test"].sentences:
    text = " ".join(sentence.tokens)
    assert word_tokenize.tokenize(text) == sentence.tokens


# ---------------------------------------------------------------------------
# Label normalisation on crafted input.


def test_iob1_input_is_normalised(tmp_path):
  labels = ["I-X", "I-X", "B-X", "O", "I-Y", "I-X", "O", "I-X"]
  text = "".join("t%d\t%s\n" % (i, l) for i, l in enumerate(labels))
  iob = ner_data.parse_iob_file(_write(tmp_path / "a.tsv", text))
  want = ["B-X", "I-X", "B-X", "O", "B-Y", "B-X", "O", "B-X"]
  assert iob.sentences[0].labels == want
  assert iob.repairs == {"I->B": 4}
  # Same entities as a conlleval-style (IOB1-tolerant) reading of the input.
  assert get_entities(labels) == get_entities(want)


def test_iobes_input_is_normalised(tmp_path):
  labels = ["S-X", "O", "B-Y", "I-Y", "E-Y", "S-Y", "B-X", "E-X", "S-X"]
  text = "".join("w%d\t%s\n" % (i, l) for i, l in enumerate(labels))
  iob = ner_data.parse_iob_file(_write(tmp_path / "b.tsv", text))
  want = ["B-X", "O", "B-Y", "I-Y", "I-Y", "B-Y", "B-X", "I-X", "B-X"]
  assert iob.sentences[0].labels == want
  assert iob.repairs == {"S->B": 3, "E->I": 2}
  # Strict IOBES entities of the input == strict IOB2 entities of the output.
  ent_in = [e.to_tuple() for e in Entities([labels], IOBES).entities[0]]
  ent_out = [e.to_tuple() for e in Entities([want], IOB2).entities[0]]
  assert ent_in == ent_out


def test_random_iobes_roundtrip():
  """IOBES from random entity layouts always normalises to the IOB2 tags."""
  rng = random.Random(0)
  for _ in range(200):
    iobes, iob2 = [], []
    while len(iob2) < 30:
      if rng.random() < 0.5:
        iobes.append("O")
        iob2.append("O")
        continue
      etype = rng.choice(["A", "B-c", "x_y"])
      n = rng.randint(1, 4)
      if n == 1:
        iobes.append("S-" + etype)
      else:
        iobes.extend(["B-" + etype] + ["I-" + etype] * (n - 2) +
                     ["E-" + etype])
      iob2.extend(["B-" + etype] + ["I-" + etype] * (n - 1))
    assert ner_data.normalize_to_iob2(iobes)[0] == iob2
    assert ner_data.normalize_to_iob2(iob2) == (iob2, {})


def test_untyped_labels_and_collapse(tmp_path):
  text = "a\tB\nb\tI\nc\tO\nd\tI\n\ne\tB-Gene\nf\tI-Gene\ng\tB-Chem\n"
  path = _write(tmp_path / "c.tsv", text)
  sentences = ner_data.read_iob_file(path)
  assert sentences[0].labels == ["B", "I", "O", "B"]
  collapsed = ner_data.read_iob_file(path, collapse_types=True)
  assert collapsed[1] == ner_data.Sentence(["e", "f", "g"], ["B", "I", "B"])


def test_docstart_crlf_bom_and_blank_runs(tmp_path):
  text = ("\ufeff-DOCSTART-\tO\r\n\r\nA\tB-X\r\nb\tO\r\n\r\n\r\n  \r\n"
          "-DOCSTART-\tO\r\nc\tO\r\n")
  iob = ner_data.parse_iob_file(_write(tmp_path / "d.tsv", text))
  assert iob.sentences == [ner_data.Sentence(["A", "b"], ["B-X", "O"]),
                           ner_data.Sentence(["c"], ["O"])]
  assert iob.num_docstart == 2
  assert iob.token_lines == [[3, 4], [9]]


def test_get_label_list_order():
  s1 = [ner_data.Sentence(["a", "b"], ["I-Z", "B-A"])]
  s2 = [ner_data.Sentence(["c"], ["O"]), ner_data.Sentence(["d"], ["B-Z"])]
  assert ner_data.get_label_list(s1, s2) == ["O", "B-A", "B-Z", "I-Z"]
  assert ner_data.get_label_list([]) == ["O"]


# ---------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize("text,line,problem", [
    ("a\tO\nb O\n", 2, "no tab"),
    ("a\tO\n\nb\tO\textra\n", 3, "3 columns"),
    ("a\tO\nb\tX-Foo\n", 2, "not O or B/I/E/S"),
    ("a\tB_Disease\n", 1, "not O or B/I/E/S"),
    ("a\tB-\n", 1, "not O or B/I/E/S"),
    ("a\to\n", 1, "not O or B/I/E/S"),
    ("a\tO\n\tO\n", 2, "empty token"),
    ("", 1, "empty split"),
    ("\n\n-DOCSTART-\tO\n\n", 4, "empty split"),
])
def test_format_errors_name_file_and_line(tmp_path, text, line, problem):
  path = _write(tmp_path / "bad.tsv", text)
  with pytest.raises(ner_data.NerFormatError) as err:
    ner_data.read_iob_file(path)
  assert str(err.value).startswith("%s:%d: " % (path, line))
  assert problem in str(err.value)
  assert err.value.line == line and err.value.path == path


def test_invalid_utf8_names_line(tmp_path):
  path = tmp_path / "enc.tsv"
  path.write_bytes(b"a\tO\nb\tO\n\nc\xff\tO\n")
  with pytest.raises(ner_data.NerFormatError, match=r"enc\.tsv:4: not valid"):
    ner_data.read_iob_file(str(path))


def _dataset(tmp_path, train, dev, test, dev_name="devel.tsv", extra=None):
  d = tmp_path / "ds"
  d.mkdir()
  _write(d / "train.tsv", train)
  _write(d / dev_name, dev)
  if test is not None:
    _write(d / "test.tsv", test)
  for name, text in (extra or {}).items():
    _write(d / name, text)
  return str(d)


def test_load_splits_files(tmp_path):
  d = _dataset(tmp_path, "a\tB-X\n\nb\tO\n", "c\tO\n", "d\tB-X\n",
               dev_name="dev.tsv", extra={"train_dev.tsv": "e\tO\n"})
  splits = ner_data.load_splits(d)
  assert list(splits) == ["train", "dev", "test", "train_dev"]
  assert [len(splits[s]) for s in splits] == [2, 1, 1, 1]
  assert ner_data.split_path(d, "dev").endswith("dev.tsv")


def test_missing_split_is_an_error(tmp_path):
  d = _dataset(tmp_path, "a\tO\n", "b\tO\n", None)
  with pytest.raises(FileNotFoundError, match="no test split"):
    ner_data.load_splits(d)


def test_empty_dev_split_is_an_error(tmp_path):
  d = _dataset(tmp_path, "a\tO\n", "\n\n", "b\tO\n")
  with pytest.raises(ner_data.NerFormatError, match=r"devel\.tsv:2: empty"):
    ner_data.load_splits(d)


def test_unseen_test_label_warns_with_line_or_raises(tmp_path, caplog):
  d = _dataset(tmp_path, "a\tB-X\nb\tI-X\n", "c\tO\n",
               "d\tO\ne\tB-X\n\nf\tB-Y\ng\tI-Y\n\nh\tB-Y\n")
  test_path = os.path.join(d, "test.tsv")
  caplog.set_level(logging.WARNING)
  ner_data.load_splits(d)
  assert "%s:4: label 'B-Y' never occurs in the training data" % (
      test_path) in caplog.text
  assert "%s:5: label 'I-Y'" % test_path in caplog.text
  files = ner_data.load_split_files(d)
  assert ner_data.find_unseen_labels(files["train"].sentences,
                                     files["test"]) == [("B-Y", 4),
                                                        ("I-Y", 5)]
  with pytest.raises(ner_data.NerFormatError, match=r"test\.tsv:4: label"):
    ner_data.load_splits(d, strict_labels=True)


def test_count_mismatch_warns_not_fails(tmp_path, caplog):
  d = tmp_path / "NCBI-disease"
  d.mkdir()
  for name in ("train.tsv", "devel.tsv", "test.tsv"):
    _write(d / name, "a\tB-Disease\n")
  caplog.set_level(logging.WARNING)
  splits = ner_data.load_splits(str(d))
  assert len(splits["train"]) == 1
  assert "NCBI-disease train: 1 sentences, registry says 5424" in caplog.text


def test_write_iob_file_roundtrip_and_atomic(tmp_path):
  sentences = [ner_data.Sentence(["α-tocopherol", "(", "x", ")"],
                                 ["B-Chemical", "O", "B-Chemical", "O"]),
               ner_data.Sentence(["ok"], ["O"])]
  path = str(tmp_path / "out" / "train.tsv")
  ner_data.write_iob_file(path, sentences)
  assert ner_data.read_iob_file(path) == sentences
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 600
  with open(path, encoding="utf-8") as f:
    assert f.read() == ("α-tocopherol\tB-Chemical\n(\tO\nx\tB-Chemical\n)\tO"
                        "\n\nok\tO\n\n")
  # A failure half-way leaves the previous file untouched and no temp file.
  bad = sentences + [ner_data.Sentence(["tab\there"], ["O"])]
  with pytest.raises(ValueError):
    ner_data.write_iob_file(path, bad)
  assert ner_data.read_iob_file(path) == sentences
  assert os.listdir(os.path.dirname(path)) == ["train.tsv"]


# ---------------------------------------------------------------------------
# Registry.


def test_registry_entries():
  assert set(ner_registry.DATASETS) == {
      "NCBI-disease", "BC5CDR-disease", "BC5CDR-chem", "BC4CHEMD", "BC2GM",
      "JNLPBA", "LINNAEUS", "Species-800"}
  for name, info in ner_registry.DATASETS.items():
    assert info["name"] == name
    for split in ("train", "dev", "test"):
      assert info["sentences"][split] > 0 and info["mentions"][split] > 0
    assert info["urls"] and all(u.startswith("http")
                                for u in info["urls"].values())
  assert ner_registry.DATASETS["JNLPBA"]["entity_types"] == [
      "protein", "DNA", "RNA", "cell_type", "cell_line"]
  assert ner_registry.get_dataset("s800")["name"] == "Species-800"
  assert ner_registry.get_dataset("linnaeus")["dirname"] == "linnaeus"
  assert ner_registry.get_dataset("ncbi-DISEASE")["name"] == "NCBI-disease"
  with pytest.raises(ValueError, match="Unknown NER dataset 'nope'"):
    ner_registry.get_dataset("nope")


def test_resolve_dataset_dir(ner_dir, tmp_path, monkeypatch):
  root = os.path.dirname(ner_dir)
  for name in SHIPPED:
    path = ner_registry.resolve_dataset_dir(name, root)
    assert path == os.path.join(ner_dir,
                                ner_registry.DATASETS[name]["dirname"])
  # Through $BIOALBERT_DATA_DIR when no flag is given.
  monkeypatch.setenv("BIOALBERT_DATA_DIR", root)
  assert ner_registry.resolve_dataset_dir("s800").endswith(
      os.path.join("ner", "s800"))
  # A directory that directly holds dataset folders (BioBERT's NER/ layout).
  flat = tmp_path / "NER" / "BC2GM"
  flat.mkdir(parents=True)
  for name in ("train.tsv", "dev.tsv", "test.tsv"):
    _write(flat / name, "a\tO\n")
  assert ner_registry.resolve_dataset_dir("BC2GM", str(tmp_path / "NER")) == (
      str(flat))
  # data_dir naming the dataset directory itself.
  assert ner_registry.resolve_dataset_dir("bc2gm", str(flat)) == str(flat)
  with pytest.raises(FileNotFoundError, match="--download=JNLPBA"):
    ner_registry.resolve_dataset_dir("JNLPBA", str(tmp_path / "NER"))


# ---------------------------------------------------------------------------
# Word tokenizer.


def test_tokenizer_examples():
  cases = {
      "BRCA1-associated": ["BRCA1", "-", "associated"],
      "0.5 mg/kg": ["0", ".", "5", "mg", "/", "kg"],
      "child's (n=3);": ["child", "'", "s", "(", "n", "=", "3", ")", ";"],
      "α-tocopherol\u00a0+/-": ["α", "-", "tocopherol", "+", "/", "-"],
      "snake_case": ["snake", "_", "case"],
      "H\u2082O\u2009x\u200by": ["H\u2082O", "x", "y"],
      "n\u0303a": ["n\u0303a"],
      "": [],
  }
  for text, want in cases.items():
    assert word_tokenize.tokenize(text) == want, text


def test_tokenizer_offsets_slice_the_text(pubmed_dir):
  with gzip.open(os.path.join(pubmed_dir, "pubmed-sample-0001.xml.gz"),
                 "rt", encoding="utf-8") as f:
    text = re.sub(r"<[^>]+>", " ", f.read())[:300000]
  toks = word_tokenize.tokenize_with_offsets(text)
  assert len(toks) > 20000
  def invisible(c):
    return c.isspace() or unicodedata.category(c) in ("Cc", "Cf")

  prev_end = 0
  for tok, start, end in toks:
    assert text[start:end] == tok
    assert start >= prev_end
    assert all(invisible(c) for c in text[prev_end:start])
    prev_end = end
  assert all(invisible(c) for c in text[prev_end:])
  # Nothing but whitespace (and invisible format characters) is dropped.
  assert "".join(t for t, _, _ in toks) == "".join(
      c for c in text if not invisible(c))


def test_split_at_boundaries():
  toks = word_tokenize.tokenize_with_offsets("aflatoxins and 14C-glucose")
  out = word_tokenize.split_at_boundaries(toks, [9, 0, 15, 17, 26, 100])
  assert out == [("aflatoxin", 0, 9), ("s", 9, 10), ("and", 11, 14),
                 ("14", 15, 17), ("C", 17, 18), ("-", 18, 19),
                 ("glucose", 19, 26)]
  assert word_tokenize.split_at_boundaries(toks, []) == toks
