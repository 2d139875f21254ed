"""Tests for bio.experiments.pretraining_gain: the results it reports from
run directories, its settings guard, and one tiny end-to-end run with a
resume, on the fake data root (conftest)."""
import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bio.experiments import pretraining_gain as gain
from tests.bio.experiments import conftest as fake

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))


def _write_run(run_dir, curve, chosen_step, test_f1):
  os.makedirs(run_dir)
  records = [{"step": s, "conlleval_f1": f, "checkpoint": "model.ckpt-%d" % s}
             for s, f in curve]
  chosen = [r for r in records if r["step"] == chosen_step][0]
  with open(os.path.join(run_dir, "dev_results.json"), "w") as f:
    json.dump({"records": records, "chosen": chosen}, f)
  with open(os.path.join(run_dir, "test_results.json"), "w") as f:
    json.dump({"conlleval_f1": test_f1, "conlleval_precision": 0.5,
               "conlleval_recall": 0.5}, f)


def test_summary_table_and_plot(tmp_path):
  opts = gain.ExperimentOptions(output_dir=str(tmp_path), seeds=2,
                                datasets=("NCBI-disease",))
  layout = gain.Layout(str(tmp_path))
  test = {("scratch", 1): 0.30, ("scratch", 2): 0.34,
          ("pretrained", 1): 0.50, ("pretrained", 2): 0.46}
  dev = {("scratch", 1): 0.31, ("scratch", 2): 0.29,
         ("pretrained", 1): 0.52, ("pretrained", 2): 0.48}
  for (arm, seed), f1 in dev.items():
    _write_run(layout.ner("NCBI-disease", arm, seed),
               [(100, f1 - 0.1), (200, f1), (300, f1 - 0.05)], 200,
               test[arm, seed])
  summary = gain.summarize(opts, layout)["NCBI-disease"]
  for arm in gain.ARMS:
    values = [test[arm, s] for s in (1, 2)]
    assert summary[arm]["test"] == pytest.approx(
        (np.mean(values), np.std(values, ddof=1)))
  assert summary["gain"]["test"] == pytest.approx(0.16)
  assert summary["gain"]["dev"] == pytest.approx(0.20)
  check = {"total": {"documents": 1, "sentences": 2, "words": 3,
                     "dropped_leaks": 4}, "checked": 5, "found": 0}
  text = gain.markdown(opts, {"NCBI-disease": summary}, check)
  assert "| NCBI-disease | scratch | 30.0 ± 1.4 | 32.0 ± 2.8 | 1, 2 | " \
         "200, 200 |" in text
  assert "| NCBI-disease | **gain** | **+20.0** | **+16.0** | | |" in text
  pytest.importorskip("matplotlib")
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  assert gain.plot({"NCBI-disease": summary}, str(tmp_path / "p.png"))
  assert image.imread(str(tmp_path / "p.png")).shape[:2] == (360, 500)


def test_report_keeps_datasets_of_earlier_invocations(tmp_path):
  layout = gain.Layout(str(tmp_path))
  for arm in gain.ARMS:
    for seed in (1, 2):
      _write_run(layout.ner("NCBI-disease", arm, seed), [(250, 0.3)], 250,
                 0.3 if arm == "scratch" else 0.4)
    _write_run(layout.ner("BC2GM", arm, 1), [(250, 0.2)], 250,
               0.2 if arm == "scratch" else 0.25)
  # A seed finished in one arm only is not reported.
  _write_run(layout.ner("NCBI-disease", "scratch", 3), [(250, 0.9)], 250, 0.9)
  later = gain.ExperimentOptions(output_dir=str(tmp_path),
                                 datasets=("BC2GM",), seeds=1)
  assert gain.finished_runs(later, layout) == {"BC2GM": [1],
                                               "NCBI-disease": [1, 2]}
  summary = gain.summarize(later, layout)
  assert summary["NCBI-disease"]["gain"]["test"] == pytest.approx(0.1)
  text = gain.markdown(later, summary, {
      "total": {"documents": 1, "sentences": 2, "words": 3,
                "dropped_leaks": 4}, "checked": 5, "found": 0})
  # One seed: no spread shown.
  assert "| BC2GM | pretrained | 20.0 | 25.0 | 1 | 250 |" in text
  assert "| NCBI-disease | scratch | 30.0 ± 0.0 | 30.0 ± 0.0 | 1, 2 |" in text


def test_dataset_seed_syntax():
  names, counts = gain.parse_datasets(["ncbi", "BC5CDR-chem:1"])
  assert names == ("NCBI-disease", "BC5CDR-chem")
  opts = gain.ExperimentOptions(output_dir="x", datasets=names,
                                dataset_seeds=counts, seeds=3)
  assert opts.seed_list("NCBI-disease") == [1, 2, 3]
  assert opts.seed_list("BC5CDR-chem") == [1]
  for bad in ("NCBI-disease:0", "NCBI-disease:x", "nope"):
    with pytest.raises(gain.ExperimentError, match="--datasets"):
      gain.parse_datasets([bad])


def test_other_settings_are_refused(tmp_path):
  opts = gain.ExperimentOptions(output_dir=str(tmp_path))
  gain.check_settings(opts)
  gain.check_settings(opts)
  other = gain.ExperimentOptions(
      output_dir=str(tmp_path), recipe=gain.Recipe(pretrain_steps=7))
  with pytest.raises(gain.ExperimentError, match=r"recipe\.pretrain_steps: "
                     "%d -> 7" % gain.Recipe().pretrain_steps):
    gain.check_settings(other)
  # Fine-tuning more datasets or seeds on the same corpus is allowed when
  # the corpus kept their devel/test text out, refused otherwise.
  wide = gain.ExperimentOptions(output_dir=str(tmp_path / "w"),
                                exclude=("NCBI-disease", "BC2GM"))
  os.makedirs(wide.output_dir)
  gain.check_settings(wide)
  gain.check_settings(dataclasses.replace(wide, datasets=("BC2GM",),
                                          seeds=5))
  with pytest.raises(gain.ExperimentError, match="BC5CDR-chem is not in"):
    gain.check_settings(dataclasses.replace(wide, datasets=("BC5CDR-chem",)))


def test_experiment_json_from_before_a_recipe_field_still_matches(tmp_path):
  # What an experiment.json held before the depth, the fine-tuning
  # sequence length, dropout, decoder, task repeat, width, pretraining
  # seed and early attention check were recipe fields (4 layers, one
  # sequence length, no dropout, argmax, the task text once, SMALL_CONFIG's
  # width, unseeded, no check).
  opts = gain.ExperimentOptions(output_dir=str(tmp_path))
  old = opts.settings()
  for field in ("num_hidden_layers", "ner_max_seq_length", "ner_dropout",
                "ner_decode", "task_repeat", "hidden_size", "embedding_size",
                "pretrain_seed", "pretrain_check_step", "pretrain_restarts"):
    del old["recipe"][field]
  assert old["config"] == gain.SMALL_CONFIG
  with open(os.path.join(opts.output_dir, gain.SETTINGS_FILE), "w") as f:
    json.dump(old, f)
  gain.check_settings(opts)
  for change, message in [({"num_hidden_layers": 2}, "num_hidden_layers"),
                          ({"ner_max_seq_length": 64}, "ner_max_seq_length"),
                          ({"ner_dropout": 0.1}, "ner_dropout"),
                          ({"ner_decode": "viterbi"}, "ner_decode"),
                          ({"task_repeat": 4}, "task_repeat"),
                          ({"hidden_size": 256}, "hidden_size"),
                          ({"embedding_size": 128}, "embedding_size"),
                          ({"pretrain_seed": 5}, "pretrain_seed"),
                          ({"pretrain_check_step": 100},
                           "pretrain_check_step")]:
    with pytest.raises(gain.ExperimentError, match=message):
      gain.check_settings(dataclasses.replace(
          opts, recipe=gain.Recipe(**change)))


@pytest.mark.parametrize("change,message", [
    ({"ner_decode": "beam"}, "--ner_decode must be one"),
    ({"task_repeat": 0}, "--task_repeat must be at least 1, not 0"),
    ({"pretrain_seed": -1}, "--pretrain_seed must be 0 .unseeded. or "
                            "positive, not -1"),
    ({"hidden_size": 130}, "--hidden_size=130, --embedding_size=64: "
                           "hidden_size must be a positive multiple of the 4"),
    ({"embedding_size": 0}, "embedding_size at least 1"),
    ({"pretrain_check_step": 8000}, "--pretrain_check_step=8000 must be 0 "
                                    r".no early check. or between 1 and "
                                    "--pretrain_steps=8000"),
    ({"pretrain_restarts": -1}, "--pretrain_restarts must be 0 or more")])
def test_bad_recipe_values_are_refused(tmp_path, change, message):
  opts = gain.ExperimentOptions(output_dir=str(tmp_path),
                                recipe=gain.Recipe(**change))
  with pytest.raises(gain.ExperimentError, match=message):
    gain.check_settings(opts)
  assert not os.listdir(str(tmp_path))


def test_bad_recipe_leaves_no_output_directory(tmp_path):
  out = str(tmp_path / "out")
  proc = subprocess.run(
      [sys.executable, "-m", "bio.experiments.pretraining_gain",
       "--output_dir=" + out, "--task_repeat=0"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      "pretraining_gain: --task_repeat must be at least 1, not 0")
  assert not os.path.exists(out)


def test_estimate_counts_only_what_is_left(tmp_path):
  opts = gain.ExperimentOptions(output_dir=str(tmp_path), seeds=2)
  layout = gain.Layout(str(tmp_path))
  full = gain.estimate_seconds(opts, layout=layout)
  assert set(full) == {"corpus", "vocab", "records", "pretrain", "fine-tune"}
  assert full == gain.estimate_seconds(opts)
  os.makedirs(layout.pretrain)
  open(layout.pretrain_results, "w").close()
  _write_run(layout.ner("NCBI-disease", "scratch", 1), [(250, 0.2)], 250, 0.2)
  left = gain.estimate_seconds(opts, layout=layout)
  # Records are not needed once the model is pretrained.
  assert set(left) == {"corpus", "vocab", "fine-tune"}
  assert left["fine-tune"] == pytest.approx(full["fine-tune"] * 3 / 4)
  for arm in gain.ARMS:
    for seed in (1, 2):
      if not os.path.exists(layout.ner_results("NCBI-disease", arm, seed)):
        _write_run(layout.ner("NCBI-disease", arm, seed), [(250, 0.2)], 250,
                   0.2)
  assert "fine-tune" not in gain.estimate_seconds(opts, layout=layout)


def test_pretraining_estimate_grows_with_the_vocabulary():
  # Measured (2 layers, sequence 64, 10 masked pieces, batch 32): 7.7
  # steps/s with 2,000 pieces, 4.2-4.9 with 16,000.
  def pretrain(vocab_size):
    recipe = gain.Recipe(vocab_size=vocab_size, num_hidden_layers=2,
                         max_seq_length=64, max_predictions_per_seq=10)
    return gain.estimate_seconds(gain.ExperimentOptions(
        output_dir="unused", recipe=recipe))["pretrain"]
  assert 7.7 / 4.9 <= pretrain(16000) / pretrain(2000) <= 7.7 / 4.2


def _run(out, data, *extra):
  return subprocess.run(
      [sys.executable, "-m", "bio.experiments.pretraining_gain",
       "--output_dir=" + out, "--data_dir=" + data, "--seeds=1",
       "--vocab_size=120", "--pretrain_steps=2", "--pretrain_batch_size=4",
       "--ner_steps=4", "--ner_eval_every=2", "--ner_batch_size=4",
       "--dupe_factor=1", "--max_seq_length=32", "--ner_max_seq_length=48",
       "--num_hidden_layers=2", "--ner_dropout=0.1", "--ner_decode=viterbi",
       "--max_predictions_per_seq=5", "--task_repeat=2", "--pretrain_seed=3",
       "--pretrain_check_step=1", "--pretrain_restarts=0", *extra],
      cwd=ROOT, capture_output=True, text=True, timeout=900,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))


def test_tiny_end_to_end_then_resume(fake_data, tmp_path):
  out = str(tmp_path / "exp")
  proc = _run(out, fake_data)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(os.path.join(out, gain.RESULTS_JSON), encoding="utf-8") as f:
    results = json.load(f)
  assert results["corpus_check"]["found"] == 0
  # The evaluated training text is in the corpus twice (--task_repeat=2).
  lines = []
  for name in sorted(os.listdir(os.path.join(out, "corpus"))):
    if name.startswith("corpus-"):
      with open(os.path.join(out, "corpus", name), encoding="utf-8") as f:
        lines += f.read().splitlines()
  for words, _ in fake.TRAIN:
    assert lines.count(words) == 2
  ncbi = results["results"]["NCBI-disease"]
  for arm in gain.ARMS:
    run_dir = os.path.join(out, "ner", "NCBI-disease", arm, "seed-1")
    with open(os.path.join(run_dir, "test_results.json")) as f:
      test = json.load(f)
    assert ncbi[arm]["test"][0] == test["conlleval_f1"]
    assert test["decode"] == "viterbi"
    assert [s for s, _ in ncbi[arm]["runs"]["1"]["curve"]] == [2, 4]
  with open(os.path.join(out, "ner", "NCBI-disease", "pretrained", "seed-1",
                         "run_config.json")) as f:
    config = json.dumps(json.load(f))
  assert "pretrain/model.ckpt-2" in config
  # Pretraining and fine-tuning have their own sequence lengths; the depth
  # is the recipe's.
  assert '"max_seq_length": 48' in config
  with open(os.path.join(out, "albert_config.json")) as f:
    assert json.load(f)["num_hidden_layers"] == 2
  # Fine-tuning, and only fine-tuning, has the recipe's dropout.
  for name, dropout in [("albert_config.json", 0.0),
                        ("albert_config_ner.json", 0.1)]:
    with open(os.path.join(out, name)) as f:
      model = json.load(f)
    assert (model["hidden_dropout_prob"],
            model["attention_probs_dropout_prob"]) == (dropout, dropout)
  assert "albert_config_ner.json" in config
  with open(os.path.join(out, gain.RESULTS_MD), encoding="utf-8") as f:
    text = f.read()
  assert "labels decoded by viterbi" in text
  assert "The training text of NCBI-disease is in it 2 times" in text
  pretrain_cmd = [line for line in proc.stdout.splitlines()
                  if "run_pretraining.py" in line]
  assert len(pretrain_cmd) == 2
  assert "--max_seq_length=32 " in pretrain_cmd[0]
  assert all(c.endswith(" --seed=3") for c in pretrain_cmd)
  # Stopped at step 1 for the attention check, then continued to the end.
  assert " --stop_at_step=1 " in pretrain_cmd[0]
  assert "--stop_at_step" not in pretrain_cmd[1]
  with open(os.path.join(out, "pretrain", "attention-1.json")) as f:
    early = json.load(f)
  assert early["checkpoint"].endswith("pretrain/model.ckpt-1")
  assert "Check the attention at step 1" in proc.stdout
  if early["collapsed"]:
    assert "no restart left (--pretrain_restarts=0)" in proc.stdout
  assert not os.path.exists(os.path.join(out, "pretrain-collapsed-1"))
  assert ("sequence 32, seed 3, attention checked at step 1 (up to 0 "
          "restarts);" in text)
  # The pretrained model's own eval and its attention check are reported.
  with open(os.path.join(out, "pretrain", "eval_results.txt")) as f:
    evals = dict(line.strip().split(" = ") for line in f if " = " in line)
  assert results["pretrained"]["masked_lm_accuracy"] == pytest.approx(
      float(evals["masked_lm_accuracy"]))
  with open(os.path.join(out, "pretrain", "attention.json")) as f:
    attention = json.load(f)
  assert attention["checkpoint"].endswith("pretrain/model.ckpt-2")
  assert "Pretrained model: masked-LM accuracy %.3f" % float(
      evals["masked_lm_accuracy"]) in text
  assert "attention: " + attention["verdict"].rstrip(".") in text
  assert "    attention: " + attention["verdict"] in proc.stdout
  # The warm-up never exceeds the run (320 by default, 4 steps here).
  assert '"warmup_step": 4' in config
  # A re-run redoes nothing; other settings are refused in one line.
  again = _run(out, fake_data)
  assert again.returncode == 0, again.stderr[-3000:]
  assert len(re.findall("already done", again.stdout)) == 7
  assert "Estimated time" in proc.stdout
  assert "Estimated time" not in again.stdout
  refused = _run(out, fake_data, "--ner_learning_rate=0.5")
  assert refused.returncode == 1
  assert refused.stderr.strip().splitlines()[-1].startswith(
      "pretraining_gain: ")
  assert "ner_learning_rate" in refused.stderr
  assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("module", ["bio.experiments.pretraining_gain",
                                    "bio.demo"])
def test_zero_seeds_is_refused_before_any_work(tmp_path, module):
  out = str(tmp_path / "out")
  proc = subprocess.run(
      [sys.executable, "-m", module, "--output_dir=" + out, "--seeds=0"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode != 0
  assert "--seeds=0" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(out)


def test_width_sets_the_feed_forward_layer_too():
  config = gain.Recipe(hidden_size=256, embedding_size=128).config()
  assert (config["hidden_size"], config["intermediate_size"],
          config["embedding_size"]) == (256, 1024, 128)
  assert config["num_attention_heads"] == gain.SMALL_CONFIG[
      "num_attention_heads"]
  assert gain.Recipe().config() == dict(gain.SMALL_CONFIG,
                                        num_hidden_layers=4)


def test_report_line_of_the_pretrained_model():
  assert gain._pretrained_line({}) is None
  line = gain._pretrained_line({
      "masked_lm_accuracy": 0.29, "masked_lm_loss": 4.64,
      "attention": "no head collapsed.", "collapsed_heads": 0})
  assert line == ("Pretrained model: masked-LM accuracy 0.290, loss 4.64 "
                  "(its eval on 20 batches of the pretraining records); "
                  "attention: no head collapsed.")
  stalled = gain._pretrained_line({
      "attention": "4 of 8 heads collapsed (application,head): 0,0 0,1 0,2 "
                   "0,3", "collapsed_heads": 4})
  assert stalled.startswith("Pretrained model: attention: 4 of 8 heads")
  assert "stalled on the masked-LM plateau" in stalled


class _FakeStages(object):
  """Stands in for `stages.Stages`: a pretraining stage makes its
  checkpoint, an attention check writes the next scripted verdict."""

  def __init__(self, layout, verdicts):
    self.layout = layout
    self.verdicts = list(verdicts)
    self.commands = []
    self.said = []

  def say(self, text):
    self.said.append(text)

  def run(self, title, argv, done, name=None):
    del title, name
    self.commands.append(argv)
    if os.path.exists(done):
      return False
    flag = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and
                "=" in a)
    if "run_pretraining.py" in argv:
      os.makedirs(flag["output_dir"], exist_ok=True)
      step = flag.get("stop_at_step", flag["num_train_steps"])
      open(os.path.join(flag["output_dir"], "model.ckpt-%s.index" % step),
           "w").close()
      if "stop_at_step" not in flag:
        open(done, "w").close()
    else:
      collapsed = self.verdicts.pop(0)
      with open(flag["output_file"], "w") as f:
        json.dump({"checkpoint": flag["init_checkpoint"],
                   "collapsed": [[0, h] for h in range(collapsed)],
                   "verdict": "%d collapsed." % collapsed if collapsed else
                              "no head collapsed."}, f)
    return True


def _pretrain_with(tmp_path, verdicts, restarts=2, seed=5):
  recipe = gain.Recipe(pretrain_steps=10, pretrain_check_step=4,
                       pretrain_restarts=restarts, pretrain_seed=seed)
  opts = gain.ExperimentOptions(output_dir=str(tmp_path), recipe=recipe)
  layout = gain.Layout(str(tmp_path))
  stages = _FakeStages(layout, verdicts)
  checkpoint = gain.pretrain_until_healthy(stages, opts, layout, ["r"], "v")
  return opts, layout, stages, checkpoint


def _seeds(stages):
  return [[a for a in argv if a.startswith(("--seed", "--stop_at_step"))]
          for argv in stages.commands if "run_pretraining.py" in argv]


def test_collapsed_runs_are_kept_aside_and_restarted_with_the_next_seed(
    tmp_path):
  opts, layout, stages, checkpoint = _pretrain_with(tmp_path, [3, 1, 0])
  assert checkpoint == os.path.join(layout.pretrain, "model.ckpt-10")
  assert _seeds(stages) == [["--stop_at_step=4", "--seed=5"],
                            ["--stop_at_step=4", "--seed=6"],
                            ["--stop_at_step=4", "--seed=7"], ["--seed=7"]]
  assert layout.collapsed_runs() == [layout.collapsed_run(1),
                                     layout.collapsed_run(2)]
  # Each kept run still holds its early checkpoint and its verdict.
  assert os.path.exists(os.path.join(layout.collapsed_run(2),
                                     "model.ckpt-4.index"))
  checks = gain.pretrained_checks(layout, opts.recipe)
  assert checks["seed"] == 7
  assert [(r["seed"], r["verdict"]) for r in checks["restarts"]] == [
      (5, "3 collapsed."), (6, "1 collapsed.")]
  line = gain._restarts_line(opts.recipe, checks)
  assert line == ("Pretraining restarted 2 times: at step 4 the attention "
                  "of the run with seed 5, the run with seed 6 had collapsed "
                  "(3 collapsed; 1 collapsed); the run reported is seed 7.")
  # A re-run finds the finished run and starts nothing.
  again = _FakeStages(layout, [])
  gain.pretrain_until_healthy(again, opts, layout, ["r"], "v")
  assert _seeds(again) == [["--seed=7"]]
  assert layout.collapsed_runs() == [layout.collapsed_run(1),
                                     layout.collapsed_run(2)]


def test_restarts_stop_at_the_limit_and_the_run_goes_on(tmp_path):
  _, layout, stages, _ = _pretrain_with(tmp_path, [2, 2], restarts=1)
  assert _seeds(stages) == [["--stop_at_step=4", "--seed=5"],
                            ["--stop_at_step=4", "--seed=6"], ["--seed=6"]]
  assert layout.collapsed_runs() == [layout.collapsed_run(1)]
  assert any("no restart left (--pretrain_restarts=1)" in s
             for s in stages.said)


def test_a_healthy_early_check_continues_the_same_run(tmp_path):
  _, layout, stages, _ = _pretrain_with(tmp_path, [0], seed=0)
  # Unseeded: no --seed; the continuation has the same flags, no stop.
  assert _seeds(stages) == [["--stop_at_step=4"], []]
  assert layout.collapsed_runs() == []


def test_no_early_check_by_default(tmp_path):
  recipe = gain.Recipe(pretrain_steps=10)
  opts = gain.ExperimentOptions(output_dir=str(tmp_path), recipe=recipe)
  layout = gain.Layout(str(tmp_path))
  stages = _FakeStages(layout, [])
  gain.pretrain_until_healthy(stages, opts, layout, ["r"], "v")
  assert _seeds(stages) == [[]]
  assert "restarts" not in gain.pretrained_checks(layout, recipe)
