"""Tests for bio/experiments/attention.py (the attention-collapse check)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import modeling
from bio.experiments import attention

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))
TINY_CONFIG = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
SEQ = 16
CLS, SEP = 2, 3


def _loop_reference(probs, mask, special):
  """Per head means over valid rows, written as plain loops."""
  b_n, h_n, t_n, _ = probs.shape
  out = np.zeros((h_n, 4))
  rows = 0
  for b in range(b_n):
    for f in range(t_n):
      if not mask[b, f]:
        continue
      rows += 1
      for h in range(h_n):
        row = probs[b, h, f]
        out[h, 0] -= sum(p * np.log(p) for p in row if p > 0)
        out[h, 1] += row[f]
        out[h, 2] += (row[f - 1] if f > 0 else 0) + (
            row[f + 1] if f + 1 < t_n else 0)
        out[h, 3] += sum(row[k] for k in range(t_n) if special[b, k])
  return out / rows


def test_row_sums_match_plain_loops():
  rng = np.random.RandomState(3)
  lengths = [5, 8, 3]
  mask = np.array([[1] * n + [0] * (8 - n) for n in lengths])
  logits = rng.randn(3, 2, 8, 8) * 3
  logits = np.where(mask[:, None, None, :] > 0, logits, -1e9)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ids = rng.randint(5, 50, size=(3, 8))
  ids[:, 0] = CLS
  for b, n in enumerate(lengths):
    ids[b, n - 1] = SEP
  special = attention.special_mask(ids, mask)
  sums, rows = attention.row_sums(probs, mask, special)
  np.testing.assert_allclose(sums / rows,
                             _loop_reference(probs, mask, special),
                             rtol=1e-10)


def test_special_mask_finds_cls_and_every_sep():
  ids = np.array([[CLS, 7, SEP, 9, SEP, 0], [CLS, 8, 8, SEP, 0, 0]])
  mask = (ids > 0).astype(np.int64)
  np.testing.assert_array_equal(
      attention.special_mask(ids, mask),
      [[1, 0, 1, 0, 1, 0], [1, 0, 0, 1, 0, 0]])
  with pytest.raises(attention.AttentionError, match="no tokens"):
    attention.special_mask(ids, np.zeros_like(mask))


@pytest.mark.parametrize("stats, collapsed", [
    (attention.HeadStats(0.1, 0.05, 0.05, 0.0), True),
    (attention.HeadStats(0.9, 0.1, 0.7, 0.0), False),   # a neighbour head
    (attention.HeadStats(0.1, 0.0, 0.0, 0.9), False),   # on [SEP]
    (attention.HeadStats(3.0, 0.02, 0.04, 0.05), False),  # broad
])
def test_collapse_verdict(stats, collapsed):
  assert stats.collapsed is collapsed


def _write_records(path, lengths):
  with tf.io.TFRecordWriter(path) as w:
    for i, n in enumerate(lengths):
      ids = [CLS] + [10 + (i + j) % 50 for j in range(n - 2)] + [SEP]
      ids += [0] * (SEQ - n)
      feats = {
          "input_ids": ids,
          "input_mask": [1] * n + [0] * (SEQ - n),
          "segment_ids": [0] * SEQ,
      }
      example = tf.train.Example(features=tf.train.Features(feature={
          k: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
          for k, v in feats.items()}))
      w.write(example.SerializeToString())


def _uniform_attention_checkpoint(prefix):
  """A tiny ALBERT whose query and key weights are zero: every attention
  row is uniform over the sequence's real tokens."""
  config = modeling.AlbertConfig.from_json_file(TINY_CONFIG)
  with tf.Graph().as_default():
    ids = tf.zeros([1, SEQ], tf.int32)
    modeling.AlbertModel(config, is_training=False, input_ids=ids)
    zero = [tf.assign(v, tf.zeros_like(v)) for v in tf.global_variables()
            if "/query/" in v.name or "/key/" in v.name]
    assert len(zero) == 4
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(zero)
      tf.train.Saver().save(sess, prefix)


@pytest.fixture(scope="module")
def uniform_run(tmp_path_factory):
  d = tmp_path_factory.mktemp("attention")
  lengths = [16, 9, 4, 12, 7]
  _write_records(str(d / "r.tfrecord"), lengths)
  _uniform_attention_checkpoint(str(d / "model.ckpt-5"))
  return d, lengths


def test_uniform_attention_has_log_length_entropy(uniform_run):
  d, lengths = uniform_run
  stats, mean_log_length, checkpoint = attention.checkpoint_stats(
      attention.AttentionOptions(
          albert_config_file=TINY_CONFIG, init_checkpoint=str(d),
          input_file=str(d / "*.tfrecord"), max_seq_length=SEQ, batches=2,
          batch_size=3))
  rows = sum(lengths)
  # Each row of a length-n sequence: entropy log n, 1/n on itself,
  # (neighbours)/n on its neighbours, 2/n on [CLS] and [SEP].
  expected = np.array([
      sum(n * np.log(n) for n in lengths),
      sum(n * (1 / n) for n in lengths),
      sum(2 * (n - 1) / n for n in lengths),
      sum(n * 2 / n for n in lengths)]) / rows
  assert len(stats) == 2 and all(len(heads) == 2 for heads in stats)
  for heads in stats:
    for s in heads:
      np.testing.assert_allclose(
          [s.entropy, s.self, s.neighbours, s.special], expected, rtol=1e-5)
      assert not s.collapsed
  assert mean_log_length == pytest.approx(np.mean(np.log(lengths)))
  assert checkpoint == str(d / "model.ckpt-5")


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
      [sys.executable, "-m", "bio.experiments.attention"] + list(args),
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_prints_the_table_and_writes_json(uniform_run, tmp_path):
  d, lengths = uniform_run
  out = tmp_path / "attention.json"
  proc = _cli("--albert_config_file=" + TINY_CONFIG,
              "--init_checkpoint=" + str(d / "model.ckpt-5"),
              "--input_file=" + str(d / "r.tfrecord"),
              "--max_seq_length=%d" % SEQ, "--output_file=%s" % out)
  assert proc.returncode == 0, proc.stderr
  assert "| 1 | 1 |" in proc.stdout and "no head collapsed." in proc.stdout
  written = json.loads(out.read_text())
  assert written["collapsed"] == [] and len(written["heads"]) == 2
  assert written["heads"][1][0]["entropy"] == pytest.approx(
      sum(n * np.log(n) for n in lengths) / sum(lengths), rel=1e-5)
  assert os.listdir(tmp_path) == ["attention.json"]


def test_verdict_names_the_collapsed_heads():
  sharp = attention.HeadStats(0.0, 0.0, 0.0, 0.0)
  broad = attention.HeadStats(3.0, 0.1, 0.1, 0.1)
  stats = [[sharp, broad], [broad, sharp]]
  assert attention.verdict(stats) == (
      "2 of 4 heads collapsed (application,head): 0,0 1,1")
  assert attention.to_json(stats, 1.0, "c")["collapsed"] == [[0, 0], [1, 1]]


@pytest.mark.parametrize("flag, message", [
    ("--init_checkpoint={d}/nothing", "no such checkpoint"),
    ("--input_file={d}/none-*.tfrecord", "matches no file"),
    ("--max_seq_length=32", "has 16 int64_list values, expected 32 "
                            "(--max_seq_length=32 must match"),
])
def test_cli_bad_input_is_one_line(uniform_run, flag, message):
  d, _ = uniform_run
  args = {"--albert_config_file": TINY_CONFIG,
          "--init_checkpoint": str(d / "model.ckpt-5"),
          "--input_file": str(d / "r.tfrecord"),
          "--max_seq_length": str(SEQ)}
  name, value = flag.split("=", 1)
  args[name] = value.format(d=d)
  proc = _cli(*["%s=%s" % kv for kv in args.items()])
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("bio.experiments.attention: ") and message in last
  assert "Traceback" not in proc.stderr


def test_cli_checkpoint_of_another_model_is_one_line(uniform_run, tmp_path):
  d, _ = uniform_run
  with open(TINY_CONFIG) as f:
    wider = json.load(f)
  wider.update(hidden_size=64, intermediate_size=128)
  config = tmp_path / "wider.json"
  config.write_text(json.dumps(wider))
  proc = _cli("--albert_config_file=%s" % config,
              "--init_checkpoint=" + str(d / "model.ckpt-5"),
              "--input_file=" + str(d / "r.tfrecord"),
              "--max_seq_length=%d" % SEQ)
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert "does not fit --albert_config_file" in last, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
