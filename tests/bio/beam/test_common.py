"""bio.beam.common: pipeline options, file staging and publishing.

Skipped when apache_beam is not installed (`pip install .[beam]`).
"""
import pytest

beam = pytest.importorskip("apache_beam")

# pylint: disable=wrong-import-position
from bio.beam import common


def test_unknown_flags_are_left_for_beam_and_runner_defaults():
  options = common.pipeline_options(
      ["--runner=FnApiRunner", "--num_workers=7"]).get_all_options()
  assert options["runner"] == "FnApiRunner" and options["num_workers"] == 7
  # Without --runner, the local default that never downloads anything.
  assert common.pipeline_options([]).get_all_options()[
      "runner"] == common.DEFAULT_RUNNER == "FnApiRunner"
