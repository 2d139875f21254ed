"""Sentence splitting (bio.text.sentences) on crafted and real biomedical text."""
import glob
import gzip
import os
import re
import xml.etree.ElementTree as ET

import pytest

from bio.text import sentences

# (paragraph as the list of its expected sentences)
CASES = [
    ["Several pathogens, e.g. Salmonella and Shigella, were isolated.",
     "Growth was slow."],
    ["Several pathogens (e.g., Salmonella) were isolated.",
     "Growth was slow."],
    ["The main effect, i.e. inhibition of growth, was dose dependent.",
     "It was reversible."],
    ["As reported by Smith et al. in 2001, the gene is essential.",
     "We confirm this."],
    ["Smith et al. (2001) showed that the gene is essential.",
     "We confirm this."],
    ["Results are shown in Fig. 2 and Fig. 3A.", "The effect was strong."],
    ["Expression increased (Figs. 2 and 3) in all samples.",
     "The effect was strong."],
    ["Strains of E. coli K-12 were grown in LB medium.",
     "Cells were harvested at mid-log phase."],
    ["We infected mice with S. aureus and P. aeruginosa.",
     "All mice survived."],
    ["The mean was 3.5 mg/kg with a range of 0.25 to 12.75 mg/kg.",
     "No toxicity was seen."],
    ["The difference was significant (p < 0.05).",
     "Other comparisons were not."],
    ["The difference was significant (p<0.001, n = 12).",
     "Other comparisons were not."],
    ["Cells were treated with 10 uM drug vs. vehicle control.",
     "Viability was measured."],
    ["A new species, Bacillus novus sp. nov., is described.",
     "Its genome was sequenced."],
    ["Tuber spp. are ectomycorrhizal fungi.", "They form truffles."],
    ["The concentration was 0.5 \u00b5g/ml.", "Cells were counted."],
    ["The assay took 50 min.", "Detection was fast."],
    ["Is this effect specific?", "We tested two controls."],
]

# Never the last word of a line (the list, plus Figs.).
LISTED_ENDINGS = re.compile(r"(?:\be\.g\.|\bi\.e\.|\bet al\.|\bFigs?\.)$",
                            re.IGNORECASE)


@pytest.mark.parametrize("expected", CASES, ids=lambda c: c[0][:30])
def test_crafted_biomedical_cases(expected):
  assert sentences.split_sentences(" ".join(expected)) == expected


def test_listed_abbreviations_never_end_a_line_even_at_a_true_end():
  # A true sentence end after "et al." is merged on purpose (see module).
  out = sentences.split_sentences(
      "This follows Tcherkez et al. The next sentence starts here.")
  assert out == ["This follows Tcherkez et al. The next sentence starts "
                 "here."]


@pytest.mark.parametrize("text", [
    "", "   ", "One sentence without a final stop",
    "Unicode \U0001d6fc-helix and \U0001f600 and \u2212 signs. Next one.",
    "Ends inside a token CO(2).Here no space. Next.",
    "Weird\x00control chars. Next sentence here.",
    "  Leading   and trailing   spaces.   Another one.  ",
    "x" * 5000 + ". " + "y" * 10,
])
def test_text_is_preserved_exactly(text):
  out = sentences.split_sentences(text)
  assert " ".join(out) == " ".join(text.split())
  assert all(s and s == s.strip() and "\n" not in s for s in out)


def test_split_lines_keeps_line_breaks_as_boundaries():
  out = sentences.split_lines(["A title without a stop", "Body text. More."])
  assert out == ["A title without a stop", "Body text.", "More."]


def _sample_paragraphs(data_dir):
  """Titles, abstract sections and PMC paragraphs of the shared sample."""
  paragraphs = []
  for path in sorted(glob.glob(os.path.join(data_dir, "pubmed", "**",
                                            "*.xml.gz"), recursive=True)):
    with gzip.open(path) as f:
      root = ET.parse(f).getroot()
    for tag in ("ArticleTitle", "AbstractText"):
      paragraphs.extend(" ".join("".join(e.itertext()).split())
                        for e in root.iter(tag))
  for path in sorted(glob.glob(os.path.join(data_dir, "pmc", "*.nxml"))):
    paragraphs.extend(" ".join("".join(e.itertext()).split())
                      for e in ET.parse(path).getroot().iter("p"))
  return [p for p in paragraphs if p]


def test_real_sample_no_listed_abbreviation_ends_a_line(shared_data_dir):
  paragraphs = _sample_paragraphs(shared_data_dir)
  assert len(paragraphs) > 1000
  lines = 0
  for paragraph in paragraphs:
    out = sentences.split_sentences(paragraph)
    assert " ".join(out) == paragraph
    lines += len(out)
    for left, right in zip(out, out[1:]):
      assert not LISTED_ENDINGS.search(left), (left, right)
      # Species names: a genus initial is never cut from its epithet.
      if re.search(r"(?:^|\s)[A-Z]\.$", left):
        assert not right[0].islower(), (left, right)
      assert not re.search(r"\bp\s*[<>=]$", left), (left, right)
      assert not right.startswith((",", ";", ")")), (left, right)
  # The sample is real prose: most paragraphs hold several sentences.
  assert lines > 1.5 * len(paragraphs)
