"""SavedModel export of a bio.ner.ensemble output directory.

Two random tiny CRF members (tests/bio/tiny_ner.py; the second orders its
labels otherwise) tag a slice of NCBI-disease with bio.ner.ensemble; the
ensemble's directory is exported and served in a fresh process. The
references are independent of the export's combining code: the ensemble
tool's own test_predictions.txt, and the members' single-model exports.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from seqeval.metrics.sequence_labeling import get_entities

from tests.bio import tiny_ner

PERMUTED = ["I-Disease", "O", "B-Chemical", "I-Chemical", "B-Disease"]

# Both signatures of each export, in one fresh process (TensorFlow and
# tensorflow_text only).
_SERVE_CODE = r"""
import json
import tensorflow as tf
import tensorflow_text  # registers the SentencePiece ops
texts = json.loads(TEXTS)
ids = tf.constant(IDS, tf.int32)
result = {}
for name, path in sorted(PATHS.items()):
  loaded = tf.saved_model.load(path)
  out = loaded.signatures["serving_default"](text=tf.constant(texts))
  out = {k: v.numpy() for k, v in out.items()}
  entities = [[[int(out["starts"][i][j]), int(out["ends"][i][j]),
                out["types"][i][j].decode()]
               for j in range(int(out["num_entities"][i]))]
              for i in range(len(texts))]
  probs = loaded.signatures["tokens"](
      input_ids=ids, input_mask=tf.minimum(ids, 1), segment_ids=0 * ids)
  result[name] = {"entities": entities,
                  "probabilities": probs["probabilities"].numpy().tolist()}
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def setup(ner_dir, spm_model_file, tmp_path_factory):
  from bio.ner import ensemble  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("export_ensemble")
  data = str(root / "data")
  os.makedirs(data)
  tiny_ner.write_ner_slice(data, os.path.join(ner_dir, "NCBI-disease"),
                           {"train.tsv": 10, "devel.tsv": 10, "test.tsv": 80})

  def member(name, seed, **kw):
    return tiny_ner.write_ensemble_member(str(root / name), spm_model_file,
                                          data, seed, **kw)

  runs = {"a": member("a", 3), "b": member("b", 4, labels=PERMUTED),
          "softmax": member("softmax", 5, crf=False),
          "short": member("short", 6, max_seq_length=32)}
  out = str(root / "ens")
  ensemble.run(ensemble.EnsembleOptions(run_dirs=(runs["a"], runs["b"]),
                                        output_dir=out, predict_batch_size=8))
  return {"root": root, "data": data, "runs": runs, "ens": out}


@pytest.fixture(scope="module")
def exports(setup):
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  paths = {}
  for name, model_dir in (("ens", setup["ens"]), ("a", setup["runs"]["a"]),
                          ("b", setup["runs"]["b"])):
    paths[name] = str(setup["root"] / ("export-" + name))
    export.export_ner(model_dir, paths[name],
                      opts=export.ServingOptions(decode="crf"))
  return paths


def _ids():
  """Random piece ids of three windows, the second 12 pieces long."""
  ids = np.random.RandomState(0).randint(5, 1000, size=(3, 20))
  ids[1, 12:] = 0
  ids[:, 0] = 2
  return ids


@pytest.fixture(scope="module")
def served(setup, exports, run_python):
  """The test sentences that the serving graph splits into the dataset's
  own tokens, and what each export gives for them and for _ids()."""
  from bio.text import word_tokenize  # pylint: disable=g-import-not-at-top
  gold = tiny_ner.read_blocks(os.path.join(setup["data"], "test.tsv"))
  kept = [i for i, (tokens, _) in enumerate(gold)
          if word_tokenize.tokenize(" ".join(tokens)) == list(tokens)]
  texts = [" ".join(gold[i][0]) for i in kept]
  code = _SERVE_CODE.replace("TEXTS", repr(json.dumps(texts))).replace(
      "IDS", repr(_ids().tolist())).replace("PATHS", repr(exports))
  return {"gold": gold, "kept": kept, "out": run_python(code)}


def _word_entities(text_entities, tokens):
  """Served (start, end, type) code-point spans as (type, first, last) word
  indices of `tokens` joined by single spaces."""
  starts, offset = [], 0
  for token in tokens:
    starts.append(offset)
    offset += len(token) + 1
  ends = [s + len(t) for s, t in zip(starts, tokens)]
  return sorted((etype, starts.index(s), ends.index(e))
                for s, e, etype in text_entities)


def test_served_entities_are_the_ensembles_predictions(setup, served):
  gold, kept = served["gold"], served["kept"]
  assert len(kept) >= 60
  written = [[row[2] for row in s] for s in tiny_ner.read_predictions(
      os.path.join(setup["ens"], "test_predictions.txt"))]
  want = [sorted(get_entities(written[i])) for i in kept]
  assert sum(len(w) for w in want) > 300  # the members tag plenty

  def agreeing(name):
    return sum(_word_entities(ents, gold[i][0]) == w for i, ents, w in zip(
        kept, served["out"][name]["entities"], want))

  assert agreeing("ens") >= len(kept) - 1  # a float near-tie at most
  # Neither member alone serves these entities.
  assert agreeing("a") < len(kept) // 2 and agreeing("b") < len(kept) // 2


def test_tokens_signature_is_the_members_geometric_mean(served):
  ens, a, b = [np.asarray(served["out"][n]["probabilities"], np.float64)
               for n in ("ens", "a", "b")]
  b = b[..., [PERMUTED.index(label) for label in tiny_ner.LABELS]]
  expected = np.sqrt(np.maximum(a, 1e-30) * np.maximum(b, 1e-30))
  expected /= expected.sum(-1, keepdims=True)
  real = _ids() > 0  # beyond a row's width every export gives zeros
  np.testing.assert_allclose(ens[real], expected[real], rtol=2e-4, atol=1e-6)
  assert np.abs(a - b)[real].max() > 0.5  # the members do disagree


def test_assets_record_the_members(setup, exports):
  assets = os.path.join(exports["ens"], "assets")
  with open(os.path.join(assets, "ensemble.json")) as f:
    record = json.load(f)
  assert [m["run_dir"] for m in record["members"]] == [
      os.path.abspath(setup["runs"][n]) for n in ("a", "b")]
  assert record["scopes"] == ["member_0", "member_1"]
  with open(os.path.join(assets, "serving_options.json")) as f:
    assert json.load(f)["decode"] == "crf"
  with open(os.path.join(assets, "label_map.json")) as f:
    assert json.load(f)["labels"] == tiny_ner.LABELS


def _hand_ensemble(path, runs, decode="viterbi", step=1):
  """An ensemble directory as bio.ner.ensemble writes it, by hand."""
  from bio.ner import run_dir  # pylint: disable=g-import-not-at-top
  os.makedirs(path)
  members = []
  for run in runs:
    members.append({"run_dir": os.path.abspath(run), "checkpoint":
                    os.path.join(os.path.abspath(run), "best",
                                 "model.ckpt-%d" % step)})
  with open(os.path.join(path, run_dir.ENSEMBLE_FILE), "w") as f:
    json.dump({"members": members, "decode": decode}, f)
  return path


@pytest.mark.parametrize("names,kw,message", [
    (["a", "short"], {}, "differ in max_seq_length"),
    (["a", "softmax"], {"decode": "crf"},
     "has no ner/crf_transitions: export the ensemble with --decode=viterbi"),
    (["a", "gone"], {}, "gone of the ensemble in .* no longer exists"),
    (["a"], {}, "fewer than two members"),
    (["a", "b"], {"step": 9}, "checkpoint .*/a/best/model.ckpt-9 of member "
     ".*/a no longer exists: run bio.ner.ensemble on the members as they are "
     "now, into a new --output_dir, and export that$"),
])
def test_refusals_write_nothing(setup, tmp_path, names, kw, message):
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  runs = [setup["runs"].get(n, str(setup["root"] / n)) for n in names]
  kw = dict(kw)
  model_dir = _hand_ensemble(str(tmp_path / "ens"), runs,
                             step=kw.pop("step", 1))
  out = str(tmp_path / "export")
  with pytest.raises(export.ExportError, match=message):
    export.export_ner(model_dir, out, opts=export.ServingOptions(**kw))
  assert not os.path.exists(out)


def test_mixed_heads_decode_with_viterbi_and_cli_refuses_a_checkpoint(
    setup, tmp_path):
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  model_dir = _hand_ensemble(str(tmp_path / "ens"),
                             [setup["runs"]["a"], setup["runs"]["softmax"]])
  resolved = export.resolve_ensemble_export(model_dir)
  assert resolved.decode == "viterbi" and resolved.crf is None
  out = str(tmp_path / "export")
  proc = subprocess.run(
      [sys.executable, "-m", "bio.serving.export", "--model_dir=" + model_dir,
       "--export_dir=" + out, "--checkpoint=" + os.path.join(
           setup["runs"]["a"], "best", "model.ckpt-1")],
      cwd=tiny_ner.ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].endswith(
      "--checkpoint cannot be given for the ensemble in %s: each member's "
      "comes from its run directory" % model_dir)
  assert not os.path.exists(out)
