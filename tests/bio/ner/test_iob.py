"""Tests for bio.ner.iob: the token-per-line reader and writer."""
import logging
import os
import random

import pytest
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, IOBES, Entities

from bio.ner import iob


def _write(path, text):
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(text)
  return str(path)



# ---------------------------------------------------------------------------
# Label normalisation on crafted input.


def test_iob1_input_is_normalised(tmp_path):
  labels = ["I-X", "I-X", "B-X", "O", "I-Y", "I-X", "O", "I-X"]
  text = "".join("t%d\t%s\n" % (i, l) for i, l in enumerate(labels))
  parsed = iob.parse_iob_file(_write(tmp_path / "a.tsv", text))
  want = ["B-X", "I-X", "B-X", "O", "B-Y", "B-X", "O", "B-X"]
  assert parsed.sentences[0].labels == want
  assert parsed.repairs == {"I->B": 4}
  # Same entities as a conlleval-style (IOB1-tolerant) reading of the input.
  assert get_entities(labels) == get_entities(want)


def test_iobes_input_is_normalised(tmp_path):
  labels = ["S-X", "O", "B-Y", "I-Y", "E-Y", "S-Y", "B-X", "E-X", "S-X"]
  text = "".join("w%d\t%s\n" % (i, l) for i, l in enumerate(labels))
  parsed = iob.parse_iob_file(_write(tmp_path / "b.tsv", text))
  want = ["B-X", "O", "B-Y", "I-Y", "I-Y", "B-Y", "B-X", "I-X", "B-X"]
  assert parsed.sentences[0].labels == want
  assert parsed.repairs == {"S->B": 3, "E->I": 2}
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
    assert iob.normalize_to_iob2(iobes)[0] == iob2
    assert iob.normalize_to_iob2(iob2) == (iob2, {})


def test_untyped_labels_and_collapse(tmp_path):
  text = "a\tB\nb\tI\nc\tO\nd\tI\n\ne\tB-Gene\nf\tI-Gene\ng\tB-Chem\n"
  path = _write(tmp_path / "c.tsv", text)
  sentences = iob.read_iob_file(path)
  assert sentences[0].labels == ["B", "I", "O", "B"]
  collapsed = iob.read_iob_file(path, collapse_types=True)
  assert collapsed[1] == iob.Sentence(["e", "f", "g"], ["B", "I", "B"])


def test_docstart_crlf_bom_and_blank_runs(tmp_path):
  text = ("\ufeff-DOCSTART-\tO\r\n\r\nA\tB-X\r\nb\tO\r\n\r\n\r\n  \r\n"
          "-DOCSTART-\tO\r\nc\tO\r\n")
  parsed = iob.parse_iob_file(_write(tmp_path / "d.tsv", text))
  assert parsed.sentences == [iob.Sentence(["A", "b"], ["B-X", "O"]),
                              iob.Sentence(["c"], ["O"])]
  assert parsed.num_docstart == 2
  assert parsed.token_lines == [[3, 4], [9]]


def test_get_label_list_order():
  s1 = [iob.Sentence(["a", "b"], ["I-Z", "B-A"])]
  s2 = [iob.Sentence(["c"], ["O"]), iob.Sentence(["d"], ["B-Z"])]
  assert iob.get_label_list(s1, s2) == ["O", "B-A", "B-Z", "I-Z"]
  assert iob.get_label_list([]) == ["O"]

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
  with pytest.raises(iob.NerFormatError) as err:
    iob.read_iob_file(path)
  assert str(err.value).startswith("%s:%d: " % (path, line))
  assert problem in str(err.value)
  assert err.value.line == line and err.value.path == path


def test_invalid_utf8_names_line(tmp_path):
  path = tmp_path / "enc.tsv"
  path.write_bytes(b"a\tO\nb\tO\n\nc\xff\tO\n")
  with pytest.raises(iob.NerFormatError, match=r"enc\.tsv:4: not valid"):
    iob.read_iob_file(str(path))


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
  splits = iob.load_splits(d)
  assert list(splits) == ["train", "dev", "test", "train_dev"]
  assert [len(splits[s]) for s in splits] == [2, 1, 1, 1]
  assert iob.split_path(d, "dev").endswith("dev.tsv")


def test_missing_split_is_an_error(tmp_path):
  d = _dataset(tmp_path, "a\tO\n", "b\tO\n", None)
  with pytest.raises(FileNotFoundError, match="no test split"):
    iob.load_splits(d)


def test_empty_dev_split_is_an_error(tmp_path):
  d = _dataset(tmp_path, "a\tO\n", "\n\n", "b\tO\n")
  with pytest.raises(iob.NerFormatError, match=r"devel\.tsv:2: empty"):
    iob.load_splits(d)


def test_unseen_test_label_warns_with_line_or_raises(tmp_path, caplog):
  d = _dataset(tmp_path, "a\tB-X\nb\tI-X\n", "c\tO\n",
               "d\tO\ne\tB-X\n\nf\tB-Y\ng\tI-Y\n\nh\tB-Y\n")
  test_path = os.path.join(d, "test.tsv")
  caplog.set_level(logging.WARNING)
  iob.load_splits(d)
  assert "%s:4: label 'B-Y' never occurs in the training data" % (
      test_path) in caplog.text
  assert "%s:5: label 'I-Y'" % test_path in caplog.text
  files = iob.load_split_files(d)
  assert iob.find_unseen_labels(files["train"].sentences,
                                     files["test"]) == [("B-Y", 4),
                                                        ("I-Y", 5)]
  with pytest.raises(iob.NerFormatError, match=r"test\.tsv:4: label"):
    iob.load_splits(d, strict_labels=True)


def test_write_iob_file_roundtrip_and_atomic(tmp_path):
  sentences = [iob.Sentence(["α-tocopherol", "(", "x", ")"],
                                 ["B-Chemical", "O", "B-Chemical", "O"]),
               iob.Sentence(["ok"], ["O"])]
  path = str(tmp_path / "out" / "train.tsv")
  iob.write_iob_file(path, sentences)
  assert iob.read_iob_file(path) == sentences
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 600
  with open(path, encoding="utf-8") as f:
    assert f.read() == ("α-tocopherol\tB-Chemical\n(\tO\nx\tB-Chemical\n)\tO"
                        "\n\nok\tO\n\n")
  # A failure half-way leaves the previous file untouched and no temp file.
  bad = sentences + [iob.Sentence(["tab\there"], ["O"])]
  with pytest.raises(ValueError):
    iob.write_iob_file(path, bad)
  assert iob.read_iob_file(path) == sentences
  assert os.listdir(os.path.dirname(path)) == ["train.tsv"]



@pytest.mark.parametrize("token", ["heart attack", "a\u00a0b", "x\x0by"])
def test_token_with_whitespace_is_rejected_with_file_and_line(tmp_path,
                                                              token):
  # Outputs separate columns with spaces: such a token would be ambiguous.
  path = str(tmp_path / "train.tsv")
  with open(path, "w", encoding="utf-8") as f:
    f.write("The\tO\n%s\tB-Disease\n\n" % token)
  with pytest.raises(iob.NerFormatError,
                     match=r"train\.tsv:2: token .* contains whitespace"):
    iob.read_iob_file(path)
