"""The BioALBERT cleaning rules (bio.text.clean) on crafted inputs."""
from bio.text import clean

LONG_A = "The first line is comfortably long enough."
LONG_B = "A second line that is also kept by the rule."


def test_blank_lines_removed_and_document_joined_into_one_paragraph():
  text = "%s\n\n\n%s\n   \n" % (LONG_A, LONG_B)
  assert clean.clean_lines(text) == [LONG_A, LONG_B]
  paragraph = clean.clean_document(text)
  assert paragraph == LONG_A + " " + LONG_B
  assert "\n" not in paragraph


def test_lines_shorter_than_20_characters_are_dropped():
  nineteen = "x" * 19
  twenty = "y" * 20
  assert len(nineteen) == 19 and len(twenty) == 20
  text = "\n".join([nineteen, twenty, "Introduction", LONG_A, "Table 1"])
  assert clean.clean_lines(text) == [twenty, LONG_A]
  # Length is measured after whitespace is normalised.
  padded = "   short but    padded     "
  assert len(padded) > 20 and len(" ".join(padded.split())) < 20
  assert clean.clean_lines(padded) == []


def test_min_chars_is_configurable():
  assert clean.clean_lines("tiny line", min_chars=1) == ["tiny line"]
  assert clean.clean_lines("tiny line", min_chars=10) == []


def test_blocks_are_lines_and_every_kind_of_line_break_splits():
  blocks = [LONG_A + "\u2028" + "too short", LONG_B + "\r\n" + LONG_A]
  assert clean.clean_lines(blocks) == [LONG_A, LONG_B, LONG_A]
  for brk in ("\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2029"):
    assert clean.clean_lines(LONG_A + brk + LONG_B) == [LONG_A,
                                                                LONG_B]


def test_whitespace_and_control_characters_are_normalised():
  messy = "  Tabs\there,\u00a0no-break\u2009thin   and\x00NUL\x07bell  "
  assert clean.normalize_whitespace(messy) == (
      "Tabs here, no-break thin and NUL bell")
  # Nothing left in a kept line counts as a line break anywhere.
  line = clean.clean_lines(messy)[0]
  assert line.splitlines() == [line]


def test_empty_documents():
  assert clean.clean_lines("") == []
  assert clean.clean_lines([]) == []
  assert clean.clean_document(["\n\n", "short"]) == ""
