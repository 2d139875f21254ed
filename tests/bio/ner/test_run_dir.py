"""The run-directory contract of bio.ner.run_dir, on fake checkpoint files."""
import json
import os

from bio.ner import run_dir


def _fake_checkpoint(prefix, payload):
  """The three files of a checkpoint prefix, each holding `payload`."""
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  for ext in (".index", ".meta", ".data-00000-of-00001"):
    with open(prefix + ext, "w") as f:
      f.write(payload + ext)


def test_label_map_round_trip(tmp_path):
  labels = ["O", "B-Disease", "I-Disease", "B-Chemical"]
  run_dir.write_label_map(str(tmp_path), labels)
  with open(tmp_path / run_dir.LABEL_MAP_FILE) as f:
    assert json.load(f) == {"O": 0, "B-Disease": 1, "I-Disease": 2,
                            "B-Chemical": 3}
  assert run_dir.read_label_list(str(tmp_path)) == labels
  assert run_dir.read_label_list(str(tmp_path / "none")) is None


def test_run_config_round_trip_and_settings(tmp_path):
  config = {"max_seq_length": 64, "label_list": ["O", "B"],
            "spm_model_file": "/m/é.model",
            run_dir.SETTINGS_KEY: {"learning_rate": 1e-5, "seed": None}}
  run_dir.write_run_config(str(tmp_path), config)
  assert run_dir.read_run_config(str(tmp_path)) == config
  assert run_dir.read_run_config(str(tmp_path / "none")) == {}
  assert run_dir.differing_settings(
      str(tmp_path), {"learning_rate": 1e-5, "seed": None}) == []
  # Only recorded names are compared.
  assert run_dir.differing_settings(
      str(tmp_path), {"learning_rate": 2e-5, "seed": None, "new": 1}) == [
          ("learning_rate", 1e-5, 2e-5)]


def test_dict_settings_differ_key_by_key(tmp_path):
  run_dir.write_run_config(str(tmp_path), {run_dir.SETTINGS_KEY: {
      "albert_config": {"hidden_size": 128, "hidden_dropout_prob": 0.0}}})
  same = {"albert_config": {"hidden_size": 128, "hidden_dropout_prob": 0.0}}
  assert run_dir.differing_settings(str(tmp_path), same) == []
  assert run_dir.differing_settings(str(tmp_path), {"albert_config": {
      "hidden_size": 128, "hidden_dropout_prob": 0.1, "gap_size": 0}}) == [
          ("albert_config.gap_size", None, 0),
          ("albert_config.hidden_dropout_prob", 0.0, 0.1)]


def test_checkpoint_step():
  assert run_dir.checkpoint_step("/a/model.ckpt-1200") == 1200
  assert run_dir.checkpoint_step("best/model.ckpt-0") == 0
  assert run_dir.checkpoint_step("/a/model.ckpt") is None
  assert run_dir.checkpoint_step("/a/other.ckpt-5") is None


def test_list_checkpoints_by_numeric_step(tmp_path):
  for step in (1000, 200, 0, 30):
    _fake_checkpoint(str(tmp_path / ("model.ckpt-%d" % step)), "x")
  _fake_checkpoint(str(tmp_path / "best" / "model.ckpt-200"), "x")
  (tmp_path / "model.ckpt-5.meta").write_text("no index: not a checkpoint")
  got = run_dir.list_checkpoints(str(tmp_path))
  assert [s for s, _ in got] == [0, 30, 200, 1000]  # not 0, 1000, 200, 30
  assert got[2][1] == str(tmp_path / "model.ckpt-200")


def test_record_best_copies_then_drops_previous(tmp_path):
  out = str(tmp_path)
  _fake_checkpoint(os.path.join(out, "model.ckpt-100"), "a")
  _fake_checkpoint(os.path.join(out, "model.ckpt-200"), "b")
  first = run_dir.record_best(out, os.path.join(out, "model.ckpt-100"))
  assert first == os.path.join(out, "best", "model.ckpt-100")
  assert run_dir.read_best_checkpoint(out) == first
  with open(os.path.join(out, run_dir.BEST_CHECKPOINT_FILE)) as f:
    assert f.read() == "best/model.ckpt-100\n"

  second = run_dir.record_best(out, os.path.join(out, "model.ckpt-200"))
  assert run_dir.read_best_checkpoint(out) == second
  assert sorted(os.listdir(os.path.join(out, "best"))) == [
      "model.ckpt-200.data-00000-of-00001", "model.ckpt-200.index",
      "model.ckpt-200.meta"]
  with open(second + ".index") as f:
    assert f.read() == "b.index"
  # The training checkpoints themselves are untouched.
  assert [s for s, _ in run_dir.list_checkpoints(out)] == [100, 200]
  assert run_dir.read_best_checkpoint(str(tmp_path / "none")) is None


def test_clear_removes_only_tool_files(tmp_path):
  out = str(tmp_path)
  _fake_checkpoint(os.path.join(out, "model.ckpt-100"), "a")
  run_dir.record_best(out, os.path.join(out, "model.ckpt-100"))
  run_dir.write_label_map(out, ["O"])
  for name in ("checkpoint", "dev_results.json", "test_predictions.txt",
               "train.tf_record", "events.out.tfevents.1.host"):
    (tmp_path / name).write_text("x")
  mine = {"notes.txt": "user", "best/README": "user", "data.tsv": "user"}
  for name, text in mine.items():
    (tmp_path / name).write_text(text)
  removed = run_dir.clear(out)
  assert os.path.join(out, "model.ckpt-100.index") in removed
  left = sorted(os.path.relpath(os.path.join(r, n), out)
                for r, _, names in os.walk(out) for n in names)
  assert left == sorted(mine)
  assert run_dir.tool_files(out) == []


def test_read_dev_results(tmp_path):
  assert run_dir.read_dev_results(str(tmp_path)) is None
  payload = {"records": [{"step": 100, "conlleval_f1": 0.5}]}
  (tmp_path / run_dir.DEV_RESULTS_FILE).write_text(json.dumps(payload))
  assert run_dir.read_dev_results(str(tmp_path)) == payload
