"""create_pretraining_data: records parsed back and checked against the text.

A small corpus (CHEMDNER abstracts from the shared data, split crudely into
sentences) and a SentencePiece model trained on it here are turned into
TFRecords, which are read back and checked against an independent
tokenization of the same text.
"""
import collections
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import create_pretraining_data as cpd
from albert import tokenization
from albert import train_spm

# pylint: disable=protected-access

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "create_pretraining_data.py")
SEED = 12345
OPTIONS = cpd.DataOptions(max_seq_length=128, dupe_factor=2,
                          max_predictions_per_seq=20)
NUM_SHARDS = 3
DOCS_PER_SHARD = 40
# ASCII punctuation of upstream's special-piece set (no apostrophe).
PUNCT = '!"#$%&()*+,-./:;?@[\\]^_`{|}~'
WORD_PIECE_RE = re.compile("[a-z%s]*" % re.escape(PUNCT))


def _sentences(text):
  return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text) if s.strip()]


Corpus = collections.namedtuple(
    "Corpus", ["dir", "shards", "spm_model", "tokenizer", "documents"])


@pytest.fixture(scope="module")
def corpus(shared_data_dir, tmp_path_factory):
  source = os.path.join(shared_data_dir, "ner-raw", "chemdner",
                        "training.abstracts.txt")
  if not os.path.exists(source):
    pytest.skip("CHEMDNER abstracts not found: %s" % source)
  docs = []
  with open(source, encoding="utf-8") as f:
    for line in f:
      _, title, abstract = line.rstrip("\n").split("\t")
      docs.append([title] + _sentences(abstract))
      if len(docs) == NUM_SHARDS * DOCS_PER_SHARD:
        break
  work = str(tmp_path_factory.mktemp("cpd"))
  shards = []
  for k in range(NUM_SHARDS):
    path = os.path.join(work, "shard-%d.txt" % k)
    with open(path, "w", encoding="utf-8") as f:
      for doc in docs[k * DOCS_PER_SHARD:(k + 1) * DOCS_PER_SHARD]:
        f.write("\n".join(doc) + "\n\n")
    shards.append(path)
  spm_model = train_spm.train_sentencepiece(
      shards, os.path.join(work, "spm"), vocab_size=1000,
      extra_args={"minloglevel": 1})
  tokenizer = tokenization.FullTokenizer(None, spm_model_file=spm_model)
  # The reference: each document as the ids of its sentences.
  documents = [[tokenizer.convert_tokens_to_ids(tokenizer.tokenize(
      tokenization.preprocess_text(s, lower=True))) for s in doc]
               for doc in docs]
  return Corpus(work, shards, spm_model, tokenizer, documents)


def _read_records(path):
  """Each record as {feature name: (kind, list of values)}."""
  records = []
  for data in tf.io.tf_record_iterator(path):
    example = tf.train.Example.FromString(data)
    record = {}
    for name, feature in example.features.feature.items():
      kind = feature.WhichOneof("kind")
      record[name] = (kind, list(getattr(feature, kind).value))
    records.append(record)
  return records


def _file_bytes(path):
  with open(path, "rb") as f:
    return f.read()


@pytest.fixture(scope="module")
def single_output(corpus):
  path = os.path.join(corpus.dir, "single.tfrecord")
  count = cpd.run_single_process(corpus.shards, [path], corpus.tokenizer, SEED,
                                 OPTIONS)
  return path, count


class _Reference(object):
  """Finds id sequences in the reference documents."""

  def __init__(self, documents):
    # One string over all documents: ",id,id," runs joined by "|", so that
    # a match never spans two documents; sentence starts recorded by offset.
    parts = []
    self.sentence_starts = set()
    offset = 0
    for doc in documents:
      text = ","
      for sentence in doc:
        self.sentence_starts.add(offset + len(text) - 1)
        text += "".join("%d," % i for i in sentence)
      parts.append(text)
      offset += len(text) + 1
    self.text = "|".join(parts)

  def _pattern(self, ids):
    return "," + "".join("%d," % i for i in ids)

  def contains(self, ids):
    return self._pattern(ids) in self.text

  def at_sentence_start(self, ids):
    pattern = self._pattern(ids)
    start = self.text.find(pattern)
    while start >= 0:
      if start in self.sentence_starts:
        return True
      start = self.text.find(pattern, start + 1)
    return False


def _is_word_start(piece):
  """Upstream's SentencePiece word-start rule, restated."""
  if piece in ("[CLS]", "[SEP]") or piece.startswith(("\u2581", "<")):
    return True
  if len(piece) == 1 and piece in PUNCT:
    return True
  return not WORD_PIECE_RE.fullmatch(piece.lower())


def check_records(records, tokenizer, documents, options):
  """Asserts every invariant of the records; returns summary statistics."""
  max_seq, max_pred = options.max_seq_length, options.max_predictions_per_seq
  cls_id, sep_id, mask_id = tokenizer.convert_tokens_to_ids(
      ["[CLS]", "[SEP]", "[MASK]"])
  assert len({cls_id, sep_id, mask_id, 0, 1}) == 5
  reference = _Reference(documents)
  stats = collections.Counter()
  lengths = []
  for rec in records:
    assert sorted(rec) == sorted([
        "input_ids", "input_mask", "segment_ids", "token_boundary",
        "masked_lm_positions", "masked_lm_ids", "masked_lm_weights",
        "next_sentence_labels"])
    for name, (kind, values) in rec.items():
      assert kind == ("float_list" if name == "masked_lm_weights"
                      else "int64_list"), name
      want = {"masked_lm_positions": max_pred, "masked_lm_ids": max_pred,
              "masked_lm_weights": max_pred, "next_sentence_labels": 1}
      assert len(values) == want.get(name, max_seq), name
    ids = rec["input_ids"][1]
    mask = rec["input_mask"][1]
    segments = rec["segment_ids"][1]
    boundary = rec["token_boundary"][1]
    positions = rec["masked_lm_positions"][1]
    labels = rec["masked_lm_ids"][1]
    weights = rec["masked_lm_weights"][1]
    order_label = rec["next_sentence_labels"][1][0]

    n = sum(mask)
    assert mask == [1] * n + [0] * (max_seq - n)
    assert ids[n:] == [0] * (max_seq - n)
    assert boundary[n:] == [0] * (max_seq - n)
    lengths.append(n)

    k = sum(1 for w in weights if w == 1.0)
    assert weights == [1.0] * k + [0.0] * (max_pred - k)
    assert positions[k:] == [0] * (max_pred - k)
    assert labels[k:] == [0] * (max_pred - k)
    masked = positions[:k]
    assert masked == sorted(set(masked))
    assert all(0 < p < n - 1 for p in masked)
    assert k <= min(max_pred, max(1, int(round(n * options.masked_lm_prob))))
    stats["predictions"] += k
    stats["to_predict"] += min(max_pred, max(1, int(round(n * 0.15))))

    # The original sequence: masked positions hold their labels.
    original = list(ids[:n])
    for p, label in zip(masked, labels[:k]):
      original[p] = label
      if ids[p] == mask_id:
        stats["as_mask"] += 1
      elif ids[p] == label:
        stats["kept"] += 1
      else:
        stats["random"] += 1
    assert original[0] == cls_id and original[-1] == sep_id
    seps = [i for i, t in enumerate(original) if t == sep_id]
    assert len(seps) == 2 and cls_id not in original[1:]
    sep = seps[0]
    assert segments[:n] == [0] * (sep + 1) + [1] * (n - sep - 1)
    assert segments[n:] == [0] * (max_seq - n)
    assert sep not in masked

    pieces = tokenizer.convert_ids_to_tokens(original)
    assert boundary[:n] == [int(_is_word_start(p)) for p in pieces]
    # Whole-word masking: a word's pieces are masked all or none. Continuation
    # pieces join the previous word even across [SEP], as upstream.
    words = []
    for i, piece in enumerate(pieces):
      if piece in ("[CLS]", "[SEP]"):
        continue
      if boundary[i] or not words:
        words.append([])
      words[-1].append(i)
    masked_set = set(masked)
    for word in words:
      assert len(masked_set.intersection(word)) in (0, len(word)), (
          pieces, masked)

    seg_a, seg_b = original[1:sep], original[sep + 1:n - 1]
    assert seg_a and seg_b
    assert reference.contains(seg_a) and reference.contains(seg_b)
    assert order_label in (0, 1)
    stats["label_%d" % order_label] += 1
    if len(seg_a) + len(seg_b) < max_seq - 3:
      # Not truncated: the segments are whole runs of sentences.
      stats["untruncated"] += 1
      if order_label == 0:
        stats["kept_order"] += 1
        assert reference.contains(seg_a + seg_b)
        assert reference.at_sentence_start(seg_a)
      else:
        swapped = reference.contains(seg_b + seg_a)
        other_doc = (reference.at_sentence_start(seg_a) and
                     reference.at_sentence_start(seg_b))
        assert swapped or other_doc
        stats["swapped"] += swapped
  stats["instances"] = len(records)
  stats["mean_length"] = float(np.mean(lengths))
  stats["short"] = sum(1 for n in lengths if n < max_seq // 2)
  return stats


def test_records_satisfy_invariants(corpus, single_output):
  path, count = single_output
  records = _read_records(path)
  assert len(records) == count > 500
  stats = check_records(records, corpus.tokenizer, corpus.documents, OPTIONS)
  # Label 1 is a swap (probability 0.5) or, for a one-sentence chunk, a B
  # from another document; among untruncated pairs that can be told apart.
  assert stats["label_0"] > 0.3 * count and stats["label_1"] > 0.3 * count
  assert stats["kept_order"] + stats["swapped"] > 50
  assert 0.35 < stats["swapped"] / (stats["kept_order"] +
                                    stats["swapped"]) < 0.65
  # 80/10/10 replacement.
  total = stats["predictions"]
  assert total > 5000
  assert abs(stats["as_mask"] / total - 0.8) < 0.03
  assert abs(stats["kept"] / total - 0.1) < 0.03
  assert abs(stats["random"] / total - 0.1) < 0.03
  # n-gram masking rarely falls short of the 15% target.
  assert stats["predictions"] > 0.95 * stats["to_predict"]
  # Mostly full sequences, some short ones (short_seq_prob = 0.1).
  assert stats["mean_length"] > 0.8 * OPTIONS.max_seq_length
  assert 0 < stats["short"] < 0.2 * count


def test_same_seed_same_bytes_other_seed_differs(corpus, single_output):
  path, count = single_output
  again = os.path.join(corpus.dir, "again.tfrecord")
  other = os.path.join(corpus.dir, "other.tfrecord")
  # Global generators must not matter.
  random.seed(1)
  np.random.seed(1)
  assert cpd.run_single_process(corpus.shards, [again], corpus.tokenizer,
                                SEED, OPTIONS) == count
  assert _file_bytes(again) == _file_bytes(path)
  cpd.run_single_process(corpus.shards, [other], corpus.tokenizer, SEED + 1,
                         OPTIONS)
  assert _file_bytes(other) != _file_bytes(path)
  check_records(_read_records(other), corpus.tokenizer, corpus.documents,
                OPTIONS)


def test_global_numpy_generator_equals_seeded_state():
  """np_rng=None (upstream's global generator) after np.random.seed(s) draws
  what RandomState(s) draws, which run_single_process relies on."""
  tokens = ["[CLS]"] + ["\u2581w%d" % (i % 7) for i in range(40)] + ["[SEP]"]
  vocab = ["a", "b", "c"]
  np.random.seed(5)
  with_global = cpd.create_masked_lm_predictions(
      tokens, 0.15, 20, vocab, random.Random(1))
  with_state = cpd.create_masked_lm_predictions(
      tokens, 0.15, 20, vocab, random.Random(1),
      np_rng=np.random.RandomState(5))
  assert with_global == with_state
  assert len(with_state[1]) == 6


@pytest.mark.parametrize("ngram,favor_shorter", [(3, True), (4, False)])
def test_ngram_draw_matches_numpy_choice(ngram, favor_shorter):
  """The n-gram length draw is upstream's np.random.choice call, draw for
  draw (the library replaces it with a faster equivalent)."""
  pvals = 1. / np.arange(1, ngram + 1)
  pvals /= pvals.sum(keepdims=True)
  if not favor_shorter:
    pvals = pvals[::-1]
  cdfs = cpd._ngram_cdfs(ngram, favor_shorter)
  # n-gram n covers n one-piece words, so the result's length is n.
  cand_index_set = [[[j] for j in range(n)] for n in range(1, ngram + 1)]
  drawn = collections.Counter()
  for seed in range(300):
    ours, theirs = np.random.RandomState(seed), np.random.RandomState(seed)
    for _ in range(3):
      n = len(cpd._choose_ngram(cand_index_set, cdfs, 0, 100, ours))
      expected = theirs.choice(np.arange(1, ngram + 1, dtype=np.int64),
                               p=pvals / pvals.sum(keepdims=True))
      assert n == expected
      drawn[n] += 1
    assert ours.random_sample() == theirs.random_sample()
  assert set(drawn) == set(range(1, ngram + 1))


def test_permutation_doubles_prediction_slots(corpus):
  tokens = ["[CLS]"] + corpus.tokenizer.tokenize(
      "the cells were treated with aspirin and ibuprofen") + ["[SEP]"]
  output, positions, labels, _ = cpd.create_masked_lm_predictions(
      tokens, 0.3, 3, list(corpus.tokenizer.vocab), random.Random(3),
      do_permutation=True, np_rng=np.random.RandomState(3))
  assert 3 < len(positions) <= 6 and positions == sorted(set(positions))
  assert [tokens[p] for p in positions] == labels
  instance = cpd.TrainingInstance(output, [0] * len(output), positions, labels,
                                  False, [1] * len(output))
  features = cpd.instance_to_features(instance, corpus.tokenizer, 32, 3,
                                      do_permutation=True)
  assert len(features["masked_lm_positions"].int64_list.value) == 6
  weights = features["masked_lm_weights"].float_list.value
  assert list(weights) == [1.0] * len(positions) + [0.0] * (6 - len(positions))


@pytest.mark.parametrize("piece,expected", [
    ("\u2581the", True), ("ing", False), ("<unk>", True), (",", True),
    ("'", True), ("'s", True), ("s-", False), ("12", True), ("\u03b1", True),
    ("ab(c", False), ("\u2581", True), (b"\xe2\x82\xac", True)])
def test_start_piece_rule(piece, expected):
  assert cpd._is_start_piece_sp(piece) is expected
  if isinstance(piece, str):
    assert _is_word_start(piece) is expected


def test_shard_seed_formula():
  for seed, index in [(12345, 0), (12345, 7), (0, 123456)]:
    digest = hashlib.sha256(("%d:%d" % (seed, index)).encode()).digest()
    assert cpd.shard_seed(seed, index) == int.from_bytes(digest[:4], "big")
  seeds = {cpd.shard_seed(SEED, i) for i in range(2000)}
  assert len(seeds) == 2000
  assert cpd.shard_seed(1, 0) != cpd.shard_seed(0, 1)


@pytest.fixture(scope="module")
def sharded_dirs(corpus):
  """The shards written in this process and by a pool of 2 workers."""
  dirs = []
  for num_workers in (1, 2):
    out_dir = os.path.join(corpus.dir, "sharded-%d" % num_workers)
    outputs = cpd.sharded_output_files(corpus.shards, out_dir)
    results = cpd.run_sharded(
        corpus.shards, outputs, {"vocab_file": None,
                                 "spm_model_file": corpus.spm_model},
        SEED, OPTIONS, num_workers=num_workers)
    assert [r.shard_index for r in results] == list(range(NUM_SHARDS))
    assert not any(r.error or r.skipped for r in results)
    dirs.append((out_dir, outputs, results))
  return dirs


def test_sharded_mode_is_deterministic_and_valid(corpus, single_output,
                                                 sharded_dirs):
  (_, outputs1, results1), (out_dir2, outputs2, results2) = sharded_dirs
  assert sorted(os.listdir(out_dir2)) == [
      "shard-%d.tfrecord" % k for k in range(NUM_SHARDS)]
  total = 0
  merged = []
  for k in range(NUM_SHARDS):
    # Worker count does not change a shard's bytes.
    assert _file_bytes(outputs1[k]) == _file_bytes(outputs2[k])
    records = _read_records(outputs2[k])
    assert len(records) == results1[k].num_instances
    assert len(records) == results2[k].num_instances
    total += len(records)
    merged.extend(records)
  sharded = check_records(merged, corpus.tokenizer, corpus.documents, OPTIONS)

  single = check_records(_read_records(single_output[0]), corpus.tokenizer,
                         corpus.documents, OPTIONS)
  # Same kind of data as the single-process mode, from the same text.
  assert abs(total - single_output[1]) < 0.05 * single_output[1]
  assert abs(sharded["mean_length"] - single["mean_length"]) < 2.0
  assert abs(sharded["label_1"] / total - single["label_1"] / single[
      "instances"]) < 0.05


def test_shard_equals_single_process_with_its_seed(corpus, sharded_dirs):
  outputs = sharded_dirs[0][1]
  path = os.path.join(corpus.dir, "shard1-single.tfrecord")
  cpd.run_single_process([corpus.shards[1]], [path], corpus.tokenizer,
                         cpd.shard_seed(SEED, 1), OPTIONS)
  assert _file_bytes(path) == _file_bytes(outputs[1])


def test_rerun_skips_complete_outputs_and_tasks_split(corpus, sharded_dirs):
  out_dir, outputs, _ = sharded_dirs[0]
  before = [os.stat(p).st_mtime_ns for p in outputs]
  tokenizer_args = {"vocab_file": None, "spm_model_file": corpus.spm_model}
  results = cpd.run_sharded(corpus.shards, outputs, tokenizer_args, SEED,
                            OPTIONS, num_workers=2)
  assert all(r.skipped for r in results) and len(results) == NUM_SHARDS
  assert [os.stat(p).st_mtime_ns for p in outputs] == before

  # A second machine's share (task 1 of 2) is shard 1 alone, same bytes.
  task_dir = os.path.join(corpus.dir, "task1")
  task_outputs = cpd.sharded_output_files(corpus.shards, task_dir)
  results = cpd.run_sharded(corpus.shards, task_outputs, tokenizer_args, SEED,
                            OPTIONS, num_workers=1, num_tasks=2, task_index=1)
  assert [r.shard_index for r in results] == [1]
  assert os.listdir(task_dir) == ["shard-1.tfrecord"]
  assert _file_bytes(task_outputs[1]) == _file_bytes(outputs[1])
  assert sorted(os.listdir(out_dir)) == sorted(
      os.path.basename(p) for p in outputs)


def _script(args, cwd):
  return subprocess.Popen(
      [sys.executable, SCRIPT] + args, cwd=cwd, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_script(corpus, single_output, sharded_dirs, tmp_path):
  """The CLI, good and bad inputs, run concurrently to save time."""
  work = str(tmp_path)
  empty = os.path.join(work, "empty.txt")
  open(empty, "w").close()
  bad = os.path.join(work, "bad.txt")
  with open(bad, "wb") as f:
    f.write(b"A fine sentence.\nAnother one.\nBroken \xff\xfe here.\n")
  config = os.path.join(work, "config.json")
  with open(os.path.join(ROOT, "albert", "configs", "albert_tiny.json")) as f:
    config_dict = json.load(f)
  config_dict["max_position_embeddings"] = 32
  with open(config, "w") as f:
    json.dump(config_dict, f)
  mixed = os.path.join(work, "mixed")
  os.mkdir(mixed)
  shutil.copy(corpus.shards[0], os.path.join(mixed, "a.txt"))
  shutil.copy(bad, os.path.join(mixed, "b.txt"))

  common = ["--spm_model_file=" + corpus.spm_model, "--max_seq_length=128",
            "--max_predictions_per_seq=20", "--dupe_factor=2"]
  good_out = os.path.join(work, "good.tfrecord")
  cases = {
      "good": ["--input_file=" + ",".join(corpus.shards),
               "--output_file=" + good_out],
      "empty": ["--input_file=" + empty,
                "--output_file=" + os.path.join(work, "empty.tfrecord")],
      "no_match": ["--input_file=" + os.path.join(work, "nothing-*.txt"),
                   "--output_file=" + os.path.join(work, "none.tfrecord")],
      "bad_utf8": ["--input_file=" + corpus.shards[0] + "," + bad,
                   "--output_file=" + os.path.join(work, "bad.tfrecord")],
      "too_long": ["--input_file=" + corpus.shards[0],
                   "--output_file=" + os.path.join(work, "long.tfrecord"),
                   "--albert_config_file=" + config],
      "sharded": ["--input_file=" + os.path.join(mixed, "*.txt"),
                  "--output_dir=" + os.path.join(work, "mixed_out"),
                  "--num_workers=1"],
  }
  procs = {name: _script(common + args, work) for name, args in cases.items()}
  done = {name: proc.communicate(timeout=300) + (proc.returncode,)
          for name, proc in procs.items()}

  _, err, code = done["good"]
  assert code == 0, err
  # The script's main is the library's single-process mode, seeded alike.
  assert _file_bytes(good_out) == _file_bytes(single_output[0])
  assert "number of instances: %d" % single_output[1] in err

  expected = {
      "empty": empty + ": no text to use",
      "no_match": "input pattern %r matches no file" % os.path.join(
          work, "nothing-*.txt"),
      "bad_utf8": bad + ":3: not valid UTF-8 (byte 0xff at column 8",
      "too_long": "--max_seq_length=128 exceeds max_position_embeddings=32",
      "sharded": os.path.join(mixed, "b.txt") + ":3: not valid UTF-8",
  }
  for name, message in expected.items():
    _, err, code = done[name]
    assert code == 1, (name, err)
    assert message in err, (name, err)
    assert "Traceback" not in err, (name, err)
  # No output (not even a temporary file) from a failed input; the good shard
  # of the sharded run is complete.
  assert sorted(os.listdir(work)) == sorted(
      ["bad.txt", "config.json", "empty.txt", "good.tfrecord", "mixed",
       "mixed_out"])
  assert os.listdir(os.path.join(work, "mixed_out")) == ["a.tfrecord"]
  assert (_file_bytes(os.path.join(work, "mixed_out", "a.tfrecord")) ==
          _file_bytes(os.path.join(corpus.dir, "sharded-1",
                                   "shard-0.tfrecord")))


@pytest.mark.parametrize("field,value,message", [
    ("max_seq_length", 5, "--max_seq_length must be at least 24"),
    ("max_predictions_per_seq", 0,
     "--max_predictions_per_seq must be at least 1"),
    ("masked_lm_prob", 0.0, "--masked_lm_prob must be in (0, 1]"),
])
def test_validate_options_rejects_settings_without_masks(field, value,
                                                         message):
  cpd.validate_options(OPTIONS)
  with pytest.raises(ValueError) as e:
    cpd.validate_options(OPTIONS._replace(**{field: value}))
  assert message in str(e.value) and ("got %s" % value) in str(e.value)

