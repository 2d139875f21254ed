"""bio.ner.ensemble: several run directories tag one test set together.

The members are random tiny CRF models (tests/bio/tiny_ner.py) on a slice
of NCBI-disease; the expected labels are recomputed here from each
member's checkpoint with a plain session.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from seqeval import metrics as seqeval_metrics

from tests.bio import tiny_ner

MAX_SEQ = 64
SLICE = {"train.tsv": 40, "devel.tsv": 20, "test.tsv": 60}
# The second member's labels come in another order.
PERMUTED = ["I-Disease", "O", "B-Chemical", "I-Chemical", "B-Disease"]


@pytest.fixture(scope="module")
def data(ner_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("ensemble_data"))
  tiny_ner.write_ner_slice(out, os.path.join(ner_dir, "NCBI-disease"), SLICE)
  return out


def _member(path, spm_model_file, data_dir, seed, crf=True,
            labels=tiny_ner.LABELS):
  return tiny_ner.write_ensemble_member(path, spm_model_file, data_dir, seed,
                                       crf=crf, labels=labels,
                                       max_seq_length=MAX_SEQ)


@pytest.fixture(scope="module")
def members(tmp_path_factory, spm_model_file, data):
  root = tmp_path_factory.mktemp("members")
  return {
      "a": _member(str(root / "a"), spm_model_file, data, seed=3),
      "b": _member(str(root / "b"), spm_model_file, data, seed=4,
                   labels=PERMUTED),
      "softmax": _member(str(root / "softmax"), spm_model_file, data,
                         seed=5, crf=False),
      "two_labels": _member(str(root / "two_labels"), spm_model_file, data,
                            seed=6, labels=["O", "B-Disease", "I-Disease"]),
  }


def _snapshot(directory):
  found = {}
  for parent, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(parent, name)
      found[os.path.relpath(path, directory)] = (os.path.getsize(path),
                                                  os.path.getmtime(path))
  return found


def _cli(args, tmpdir=None):
  env = dict(os.environ)
  if tmpdir:
    # A private temporary directory: other test workers' ensembles write
    # their own scratch into the shared one at the same time.
    env["TMPDIR"] = tmpdir
  return subprocess.run(
      [sys.executable, "-m", "bio.ner.ensemble"] + args, cwd=tiny_ner.ROOT,
      capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def ensembled(members, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("ens") / "out")
  before = {k: _snapshot(members[k]) for k in ("a", "b")}
  tmpdir = str(tmp_path_factory.mktemp("ens-tmp"))
  proc = _cli(["--run_dirs=%s,%s" % (members["a"], members["b"]),
               "--output_dir=" + out, "--predict_batch_size=8"], tmpdir)
  assert proc.returncode == 0, proc.stderr[-5000:]
  return {"out": out, "proc": proc, "before": before, "tmpdir": tmpdir}


def _member_rows(run, sentences):
  """({label: column} and [words, L] probability rows per sentence) of a
  member, computed from its checkpoint with a plain session."""
  # pylint: disable=g-import-not-at-top
  from albert import tokenization
  from bio.ner import crf, iob
  from bio.ner import features as ner_features
  # pylint: enable=g-import-not-at-top
  with open(os.path.join(run, "run_config.json")) as f:
    config = json.load(f)
  with open(os.path.join(run, "label_map.json")) as f:
    label_map = json.load(f)
  tokenizer = tokenization.FullTokenizer(
      None, do_lower_case=True, spm_model_file=config["spm_model_file"])
  encoder = ner_features.PieceEncoder(tokenizer, do_lower_case=True)
  feats = ner_features.convert_sentences(
      [iob.Sentence(t, l) for t, l in sentences], label_map, MAX_SEQ,
      encoder, allow_unknown_labels=True)
  with open(os.path.join(run, "best_checkpoint.txt")) as f:
    checkpoint = os.path.join(run, f.read().strip())
  probs = tiny_ner.window_probabilities(
      checkpoint, ner_features.features_to_arrays(feats), len(label_map))
  rows = ner_features.assemble_word_values(feats, probs,
                                          [len(t) for t, _ in sentences])
  return label_map, rows, crf.load_params(checkpoint, "ner")


def _expected(members, names, sentences, labels):
  """Each sentence's best valid IOB2 path under the members' mean scores:
  mean log-probabilities plus the mean of their CRF scores."""
  from bio.ner import crf as ner_crf  # pylint: disable=g-import-not-at-top
  from bio.ner import decoding  # pylint: disable=g-import-not-at-top
  logs, transitions, starts, ends = [], [], [], []
  for name in names:
    label_map, rows, params = _member_rows(members[name], sentences)
    cols = [label_map[l] for l in labels]
    logs.append([np.log(np.maximum(np.reshape(r, [len(r), -1]), 1e-30))[:, cols]
                 for r in rows])
    transitions.append(params.transitions[cols][:, cols])
    starts.append(params.start[cols])
    ends.append(params.end[cols])
  mean = ner_crf.CrfParams(np.mean(transitions, 0), np.mean(starts, 0),
                           np.mean(ends, 0))
  start_ok, allowed = decoding.iob2_constraints(labels)
  out = []
  for i in range(len(sentences)):
    scores = np.mean([member[i] for member in logs], axis=0)
    ids = decoding.viterbi(scores, start_ok, allowed, mean)
    out.append([labels[j] for j in ids])
  return out


def _written(path):
  """The predicted labels of run_ner.py-format test_predictions.txt."""
  return [[row[2] for row in sentence]
          for sentence in tiny_ner.read_predictions(path)]


def test_predictions_are_the_best_path_of_the_members_mean_scores(
    ensembled, members, data):
  gold = tiny_ner.read_blocks(os.path.join(data, "test.tsv"))
  expected = _expected(members, ["a", "b"], gold, tiny_ner.LABELS)
  written = _written(os.path.join(ensembled["out"], "test_predictions.txt"))
  assert len(written) == len(gold)
  same = sum(w == e for w, e in zip(written, expected))
  # One sentence may differ by a float near-tie between batchings.
  assert same >= len(gold) - 1
  # Neither member alone tags the test set this way.
  for name in ("a", "b"):
    alone = _expected(members, [name], gold, tiny_ner.LABELS)
    assert sum(w == e for w, e in zip(written, alone)) < len(gold) - 1


def test_scores_are_seqeval_on_the_written_predictions(ensembled, members,
                                                        data):
  out = ensembled["out"]
  with open(os.path.join(out, "test_results.json")) as f:
    payload = json.load(f)
  gold = [labels for _, labels in tiny_ner.read_blocks(os.path.join(data,
                                                            "test.tsv"))]
  written = _written(os.path.join(out, "test_predictions.txt"))
  assert payload["conlleval_f1"] == pytest.approx(
      seqeval_metrics.f1_score(gold, written), abs=1e-9)
  assert payload["decode"] == "crf"
  # Each member's own score, as recorded, is that of its own CRF path.
  sentences = tiny_ner.read_blocks(os.path.join(data, "test.tsv"))
  for entry, name in zip(payload["members"], ("a", "b")):
    assert entry["run_dir"] == os.path.abspath(members[name])
    alone = _expected(members, [name], sentences, tiny_ner.LABELS)
    assert entry["test_f1"] == pytest.approx(
        seqeval_metrics.f1_score(gold, alone), abs=0.02)
  with open(os.path.join(out, "ensemble.json")) as f:
    assert json.load(f)["members"] == payload["members"]
  with open(os.path.join(out, "test_results.txt")) as f:
    text = f.read()
  assert "ensemble of 2 models" in text and "decode: crf" in text
  assert "test F1 %.4f" % payload["conlleval_f1"] in ensembled["proc"].stdout


def test_members_are_untouched_and_no_scratch_is_left(ensembled, members):
  for name in ("a", "b"):
    assert _snapshot(members[name]) == ensembled["before"][name]
  assert sorted(os.listdir(ensembled["out"])) == sorted(
      ["ensemble.json", "test_results.json", "test_results.txt",
       "test_predictions.txt"])
  assert not os.listdir(ensembled["tmpdir"])


def _opts(members, names, out, **kw):
  from bio.ner import ensemble  # pylint: disable=g-import-not-at-top
  return ensemble.EnsembleOptions(
      run_dirs=tuple(members[n] for n in names), output_dir=out,
      predict_batch_size=8, **kw)


def test_rerun_recomputes_and_other_members_are_refused(ensembled, members,
                                                        tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  from bio.ner import ensemble  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out")
  shutil.copytree(ensembled["out"], out)
  with open(os.path.join(out, "test_predictions.txt"), "w") as f:
    f.write("stale\n")
  payload = ensemble.run(_opts(members, ["a", "b"], out))
  with open(os.path.join(ensembled["out"], "test_results.json")) as f:
    assert payload["conlleval_f1"] == json.load(f)["conlleval_f1"]
  with open(os.path.join(out, "test_predictions.txt")) as f:
    assert f.read() != "stale\n"
  before = _snapshot(out)
  with pytest.raises(ensemble.EnsembleError, match="other members"):
    ensemble.run(_opts(members, ["a", "softmax"], out))
  with pytest.raises(ensemble.EnsembleError, match="other decode"):
    ensemble.run(_opts(members, ["a", "b"], out, decode="viterbi"))
  assert _snapshot(out) == before


def test_decoder_follows_the_members(members, tmp_path):
  from bio.ner import ensemble  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "mixed")
  with pytest.raises(ensemble.EnsembleError,
                     match="softmax has no CRF: use --decode=viterbi"):
    ensemble.run(_opts(members, ["a", "softmax"], out, decode="crf"))
  assert not os.path.exists(out)
  payload = ensemble.run(_opts(members, ["a", "softmax"], out))
  assert payload["decode"] == "viterbi"


@pytest.mark.parametrize("names,extra,message", [
    (["a"], [], "at least two"),
    (["a", "a"], [], "names a directory twice"),
    (["a", "two_labels"], [], "members must share their labels"),
    (["a", "b"], ["--output_dir={a}"], "is one of the members"),
    (["a", "nowhere"], [], "has no run_config.json"),
    (["a", "no_length"], [], "lacks max_seq_length"),
])
def test_bad_members_are_one_line_and_write_nothing(members, tmp_path, names,
                                                    extra, message):
  from bio.ner import ensemble  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "out")
  dirs = [members.get(n, str(tmp_path / n)) for n in names]
  if "no_length" in names:
    os.makedirs(dirs[-1])
    with open(os.path.join(dirs[-1], "run_config.json"), "w") as f:
      json.dump({"albert_config_file": tiny_ner.TINY_CONFIG}, f)
  args = ["--run_dirs=" + ",".join(dirs)]
  args += [e.format(**members) for e in extra] or ["--output_dir=" + out]
  if names == ["a", "nowhere"]:
    # The command line's one-line error, once.
    proc = _cli(args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("ensemble: error: ") and message in lines[-1]
    assert "Traceback" not in proc.stderr
  else:
    flags_out = [a for a in args if a.startswith("--output_dir=")][0]
    with pytest.raises(ensemble.EnsembleError, match=message):
      ensemble.run(ensemble.EnsembleOptions(
          run_dirs=tuple(dirs), output_dir=flags_out.split("=", 1)[1]))
  assert not os.path.exists(out)


def test_geometric_mean_and_mean_params_match_numpy():
  from bio.ner import crf, ensemble  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  members = [rng.dirichlet(np.ones(4), size=5) for _ in range(3)]
  members[0][2, 1] = 0.0  # a zero stays finite
  got = ensemble.geometric_mean(members)
  floored = [np.maximum(m, 1e-30) for m in members]
  expected = np.prod(floored, axis=0) ** (1.0 / 3)
  expected /= expected.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(got, expected, rtol=1e-9)
  np.testing.assert_allclose(got.sum(axis=1), 1.0)
  params = [crf.CrfParams(rng.normal(size=(4, 4)), rng.normal(size=4),
                          rng.normal(size=4)) for _ in range(2)]
  mean = crf.mean_params(params)
  np.testing.assert_allclose(mean.transitions,
                             (params[0].transitions + params[1].transitions) / 2)
  np.testing.assert_allclose(mean.end, (params[0].end + params[1].end) / 2)
