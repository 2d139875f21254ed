"""Tests for bio.ner.datasets: the registry, locating datasets, loading
with count checks, on the real shared datasets."""
import logging
import os

import pytest

from bio.ner import datasets
from bio.ner import iob
from bio.text import word_tokenize

# Datasets shipped in token-per-line form (BC4CHEMD is converted: see
# tests/bio/ner/test_chemdner.py).
SHIPPED = [name for name, info in datasets.DATASETS.items()
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
    path = datasets.resolve_dataset_dir(name, os.path.dirname(ner_dir))
    out[name] = iob.load_split_files(path)
  return out


# ---------------------------------------------------------------------------
# The real datasets.


@pytest.mark.parametrize("name", SHIPPED)
def test_real_counts_match_raw_file_and_registry(name, shipped_files):
  info = datasets.DATASETS[name]
  files = shipped_files[name]
  assert set(files) == set(info["sentences"])
  for split, iob_file in files.items():
    raw_sentences, raw_mentions, raw_tokens = _raw_counts(iob_file.path)
    got_mentions = iob.count_mentions(iob_file.sentences)
    assert len(iob_file.sentences) == raw_sentences, (name, split)
    assert got_mentions == raw_mentions, (name, split)
    assert sum(len(s.tokens) for s in iob_file.sentences) == raw_tokens
    assert raw_sentences == info["sentences"][split], (name, split)
    assert raw_mentions == info["mentions"][split], (name, split)
    # The shared copies are already IOB2: nothing to repair.
    assert not iob_file.repairs, (name, split, iob_file.repairs)
  counts = {split: (len(f.sentences), iob.count_mentions(f.sentences))
            for split, f in files.items()}
  assert datasets.check_counts(name, counts) == []


def test_real_label_sets(shipped_files):
  jnlpba = shipped_files["JNLPBA"]
  assert iob.get_label_list(jnlpba["train"].sentences) == [
      "O", "B-DNA", "B-RNA", "B-cell_line", "B-cell_type", "B-protein",
      "I-DNA", "I-RNA", "I-cell_line", "I-cell_type", "I-protein"]
  # -DOCSTART- lines are skipped, never tokens (JNLPBA has 1,800 in train).
  assert jnlpba["train"].num_docstart == 1800
  assert all(iob.DOCSTART not in s.tokens
             for s in jnlpba["train"].sentences)
  for name in SHIPPED:
    types = datasets.DATASETS[name]["entity_types"]
    want = {"O"} | ({p + "-" + t for p in "BI" for t in types} if types
                    else {"B", "I"})
    assert set(iob.get_label_list(shipped_files[name]["train"]
                                       .sentences)) == want, name


def test_collapse_types_on_real_jnlpba(shipped_files, ner_dir):
  typed = shipped_files["JNLPBA"]["dev"].sentences
  path = os.path.join(ner_dir, "JNLPBA", "devel.tsv")
  collapsed = iob.read_iob_file(path, collapse_types=True)
  assert iob.get_label_list(collapsed) == ["O", "B", "I"]
  assert [s.tokens for s in collapsed] == [s.tokens for s in typed]
  for c, t in zip(collapsed, typed):
    assert c.labels == [l.split("-")[0] for l in t.labels]
  assert iob.count_mentions(collapsed) == 4551


def test_load_checks_counts_against_registry(ner_dir, caplog):
  """The real files match the registry, and dev/test use train's labels."""
  caplog.set_level(logging.INFO)
  splits = datasets.load(os.path.join(ner_dir, "NCBI-disease"))
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

def test_count_mismatch_warns_not_fails(tmp_path, caplog):
  d = tmp_path / "NCBI-disease"
  d.mkdir()
  for name in ("train.tsv", "devel.tsv", "test.tsv"):
    _write(d / name, "a\tB-Disease\n")
  caplog.set_level(logging.WARNING)
  splits = datasets.load(str(d))
  assert len(splits["train"]) == 1
  assert "NCBI-disease train: 1 sentences, registry says 5424" in caplog.text


# ---------------------------------------------------------------------------
# Registry.


def test_registry_entries():
  assert set(datasets.DATASETS) == {
      "NCBI-disease", "BC5CDR-disease", "BC5CDR-chem", "BC4CHEMD", "BC2GM",
      "JNLPBA", "LINNAEUS", "Species-800"}
  for name, info in datasets.DATASETS.items():
    assert info["name"] == name
    for split in ("train", "dev", "test"):
      assert info["sentences"][split] > 0 and info["mentions"][split] > 0
    assert info["urls"] and all(u.startswith("http")
                                for u in info["urls"].values())
  assert datasets.DATASETS["JNLPBA"]["entity_types"] == [
      "protein", "DNA", "RNA", "cell_type", "cell_line"]
  assert datasets.get_dataset("s800")["name"] == "Species-800"
  assert datasets.get_dataset("linnaeus")["dirname"] == "linnaeus"
  assert datasets.get_dataset("ncbi-DISEASE")["name"] == "NCBI-disease"
  with pytest.raises(ValueError, match="Unknown NER dataset 'nope'"):
    datasets.get_dataset("nope")


def test_resolve_dataset_dir(ner_dir, tmp_path, monkeypatch):
  root = os.path.dirname(ner_dir)
  for name in SHIPPED:
    path = datasets.resolve_dataset_dir(name, root)
    assert path == os.path.join(ner_dir,
                                datasets.DATASETS[name]["dirname"])
  # Through $BIOALBERT_DATA_DIR when no flag is given.
  monkeypatch.setenv("BIOALBERT_DATA_DIR", root)
  assert datasets.resolve_dataset_dir("s800").endswith(
      os.path.join("ner", "s800"))
  # A directory that directly holds dataset folders (BioBERT's NER/ layout).
  flat = tmp_path / "NER" / "BC2GM"
  flat.mkdir(parents=True)
  for name in ("train.tsv", "dev.tsv", "test.tsv"):
    _write(flat / name, "a\tO\n")
  assert datasets.resolve_dataset_dir("BC2GM", str(tmp_path / "NER")) == (
      str(flat))
  # data_dir naming the dataset directory itself.
  assert datasets.resolve_dataset_dir("bc2gm", str(flat)) == str(flat)
  with pytest.raises(FileNotFoundError, match="--download=JNLPBA"):
    datasets.resolve_dataset_dir("JNLPBA", str(tmp_path / "NER"))



def test_download_checks_sha256(monkeypatch, tmp_path, caplog):
  import hashlib  # pylint: disable=g-import-not-at-top
  src = tmp_path / "src"
  src.mkdir()
  files = {"train.tsv": "a\tO\n\n", "devel.tsv": "b\tO\n\n",
           "test.tsv": "c\tO\n\n"}
  urls = {}
  for name, text in files.items():
    (src / name).write_text(text)
    urls[name] = (src / name).as_uri()
  info = dict(datasets.get_dataset("NCBI-disease"), urls=urls)
  monkeypatch.setitem(datasets.DATASETS, "NCBI-disease", info)
  good = {u: hashlib.sha256(files[n].encode()).hexdigest()
          for n, u in urls.items()}
  monkeypatch.setattr(datasets, "SHA256", dict(good))
  target = datasets.download("NCBI-disease", str(tmp_path / "root"))
  assert sorted(os.listdir(target)) == sorted(files)
  # A wrong hash: an error naming the URL, nothing installed.
  bad = dict(good, **{urls["test.tsv"]: "0" * 64})
  monkeypatch.setattr(datasets, "SHA256", bad)
  with pytest.raises(ValueError, match="test.tsv: SHA-256 .* expected 0000"):
    datasets.download("NCBI-disease", str(tmp_path / "other"))
  other = tmp_path / "other" / datasets.NER_SUBDIR / info["dirname"]
  assert os.listdir(other) == []
  # No known hash: installed with a warning.
  monkeypatch.setattr(datasets, "SHA256", {})
  datasets.download("NCBI-disease", str(tmp_path / "third"))
  assert "has no known SHA-256" in caplog.text


def test_http_urls_are_tried_over_https_first():
  assert datasets._candidate_urls("http://x.org/a") == [  # pylint: disable=protected-access
      "https://x.org/a", "http://x.org/a"]
  assert datasets._candidate_urls("https://x.org/a") == ["https://x.org/a"]  # pylint: disable=protected-access
