"""A small fake data root: NCBI-disease-shaped splits and CHEMDNER abstracts,
one of which repeats an NCBI test sentence (a planted leak)."""
import os

import pytest

TRAIN = [
    ("Mutations in the BRCA1 gene cause familial breast cancer in carriers .",
     "O O O O O O B-Disease I-Disease I-Disease O O O"),
    ("Cystic fibrosis is a common recessive disorder of Caucasians .",
     "B-Disease I-Disease O O O O O O O O"),
    ("Patients with Huntington disease were studied over ten years .",
     "O O B-Disease I-Disease O O O O O O"),
    ("The dystrophin gene is mutated in Duchenne muscular dystrophy .",
     "O O O O O O B-Disease I-Disease I-Disease O"),
]
DEV = [("Ovarian cancer risk was higher among women with the mutation .",
        "B-Disease I-Disease O O O O O O O O O")]
TEST = [("Germline mutations ( in APC ) predispose to colorectal cancer and "
         "adenomatous polyposis coli .",
         "O O O O O O O O B-Disease I-Disease O B-Disease I-Disease I-Disease"
         " O")]
# The test sentence above as an abstract would write it: other spacing.
LEAKED = ("Germline mutations (in APC) predispose to colorectal cancer and "
          "adenomatous polyposis coli.")
ABSTRACTS = [
    ("1001", "Chemical exposure and liver toxicity in rats",
     "Rats given high doses of acetaminophen developed hepatic necrosis "
     "within two days. Co-treatment with N-acetylcysteine prevented the "
     "damage in most animals."),
    ("1002", "Colorectal neoplasia in families",
     LEAKED + " We screened two hundred relatives by colonoscopy and found "
     "adenomas in a third of them."),
    ("1003", "Cisplatin nephrotoxicity revisited",
     "Cisplatin remains a mainstay of chemotherapy for testicular cancer. "
     "Its dose is limited by renal tubular injury in many patients."),
]


def _write_split(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    for words, labels in rows:
      for w, l in zip(words.split(), labels.split()):
        f.write("%s\t%s\n" % (w, l))
      f.write("\n")


@pytest.fixture
def fake_data(tmp_path):
  root = tmp_path / "data"
  ncbi = root / "ner" / "NCBI-disease"
  ncbi.mkdir(parents=True)
  _write_split(ncbi / "train.tsv", TRAIN * 6)
  _write_split(ncbi / "devel.tsv", DEV * 3)
  _write_split(ncbi / "test.tsv", TEST * 3)
  raw = root / "ner-raw" / "chemdner"
  raw.mkdir(parents=True)
  with open(raw / "training.abstracts.txt", "w", encoding="utf-8") as f:
    for pmid, title, abstract in ABSTRACTS:
      f.write("%s\t%s\t%s\n" % (pmid, title, abstract))
  return str(root)
