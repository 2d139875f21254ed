"""Tests for albert/common_flags.py and the option objects it feeds."""
from absl import flags

from albert import common_flags
from albert import estimator_utils


def test_groups_on_fresh_flag_values():
  fv = flags.FlagValues()
  common_flags.define_tokenizer_flags(fv)
  common_flags.define_model_flags(fv)
  common_flags.define_output_dir_flag("out", flag_values=fv)
  common_flags.define_max_seq_length_flag(128, "len", flag_values=fv)
  common_flags.define_tpu_flags(iterations_per_loop=7,
                                save_checkpoints_steps=9,
                                keep_checkpoint_max=3, flag_values=fv)
  fv(["prog", "--spm_model_file=m.model", "--nodo_lower_case",
      "--albert_config_file=c.json", "--output_dir=o", "--use_tpu",
      "--tpu_name=t1", "--num_tpu_cores=32"])
  assert fv.max_seq_length == 128 and fv.output_dir == "o"
  assert fv.init_checkpoint is None and fv.albert_config_file == "c.json"
  tok = common_flags.TokenizerOptions.from_flags(fv)
  assert tok.spm_model_file == "m.model" and tok.vocab_file is None
  assert tok.do_lower_case is False
  assert tok.as_kwargs()["spm_model_file"] == "m.model"
  tpu = estimator_utils.TpuOptions.from_flags(fv)
  assert tpu == estimator_utils.TpuOptions(
      use_tpu=True, tpu_name="t1", num_tpu_cores=32, iterations_per_loop=7,
      save_checkpoints_steps=9, keep_checkpoint_max=3)
  # Groups are independent: nothing else was defined.
  assert "input_file" not in fv


def test_spm_model_file_flag_alone():
  fv = flags.FlagValues()
  common_flags.define_spm_model_file_flag("help", flag_values=fv)
  fv(["prog", "--spm_model_file=x.model"])
  assert fv.spm_model_file == "x.model"
  assert "vocab_file" not in fv


def test_seed_flag_unset_by_default_and_never_negative():
  fv = flags.FlagValues()
  common_flags.define_seed_flag("the shuffle", flag_values=fv)
  assert "the shuffle" in fv["seed"].help
  fv(["prog"])
  assert fv.seed is None
  fv(["prog", "--seed=0"])
  assert fv.seed == 0
  try:
    fv(["prog", "--seed=-1"])
  except flags.IllegalFlagValueError as e:
    assert "-1" in str(e)
  else:
    raise AssertionError("--seed=-1 was accepted")
