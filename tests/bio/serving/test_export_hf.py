"""bio.serving.export_hf: a run_ner.py directory -> AlbertForTokenClassification.

The run directory holds random weights (a big classifier scale so labels
vary); transformers must give the same per-token logits as this project's
graph on real NCBI-disease test sentences, and the token-classification
pipeline the same entities as this project's word-level decoding wherever
the two tokenizers cut the sentence alike.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import modeling
from albert import tokenization
from bio.ner import features as ner_features
from bio.ner import iob
from bio.ner import model as ner_model

torch = pytest.importorskip(
    "torch", reason="torch not installed (pip install '.[hf]')")
transformers = pytest.importorskip(
    "transformers", reason="transformers not installed (pip install '.[hf]')")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))
TINY = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
LABELS = ["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]
MAX_SEQ = 96
STEP = 7


@pytest.fixture(scope="module")
def ner_run_dir(tmp_path_factory, spm_model_file, random_ner_run):
  """A run_ner.py-style output dir holding a random 'fine-tuned' model, with
  test results for the model card."""
  run_dir = random_ner_run(str(tmp_path_factory.mktemp("ner") / "run"),
                           spm_model_file, LABELS, MAX_SEQ, step=STEP,
                           seed=0, dataset="NCBI-disease")
  with open(os.path.join(run_dir, "test_results.json"), "w") as f:
    json.dump({"conlleval_precision": 0.5, "conlleval_recall": 0.25,
               "conlleval_f1": 0.3333, "strict_f1": 0.3,
               "token_accuracy": 0.9, "decode": "viterbi"}, f)
  return run_dir


@pytest.fixture(scope="module")
def hf_export(ner_run_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("hf") / "ncbi")
  proc = subprocess.run(
      [sys.executable, "-m", "bio.serving.export_hf",
       "--model_dir=" + ner_run_dir, "--output_dir=" + out],
      capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return out


@pytest.fixture(scope="module")
def ncbi_sentences(ner_dir):
  sentences = iob.read_iob_file(os.path.join(ner_dir, "NCBI-disease",
                                             "test.tsv"))
  return [list(s.tokens) for s in sentences[:40]]


def _features(words_list, spm_model_file):
  tokenizer = tokenization.FullTokenizer(None, do_lower_case=True,
                                         spm_model_file=spm_model_file)
  encoder = ner_features.PieceEncoder(tokenizer, do_lower_case=True)
  label_map = {label: i for i, label in enumerate(LABELS)}
  features = []
  for i, words in enumerate(words_list):
    features.extend(ner_features.convert_sentence(
        i, words, None, label_map, MAX_SEQ, encoder))
  return features


def _our_logits(run_dir, arrays):
  config = modeling.AlbertConfig.from_json_file(TINY)
  with tf.Graph().as_default():
    model = modeling.AlbertModel(config, False,
                                 tf.constant(arrays["input_ids"]),
                                 tf.constant(arrays["input_mask"]))
    logits = ner_model.token_classifier(model.get_sequence_output(),
                                        len(LABELS), False)
    with tf.Session() as sess:
      tf.train.Saver().restore(sess, os.path.join(
          run_dir, "best", "model.ckpt-%d" % STEP))
      return sess.run(logits)


def test_logits_match_our_graph(hf_export, ner_run_dir, spm_model_file,
                                ncbi_sentences):
  features = _features(ncbi_sentences, spm_model_file)
  arrays = ner_features.features_to_arrays(features)
  want = _our_logits(ner_run_dir, arrays)
  model = transformers.AlbertForTokenClassification.from_pretrained(
      hf_export).eval()
  assert model.config.id2label == dict(enumerate(LABELS))
  with torch.no_grad():
    got = model(input_ids=torch.tensor(arrays["input_ids"], dtype=torch.long),
                attention_mask=torch.tensor(arrays["input_mask"],
                                            dtype=torch.long)).logits.numpy()
  real = arrays["input_mask"].astype(bool)
  np.testing.assert_allclose(got[real], want[real], atol=1e-4)
  assert len(set(want[real].argmax(-1))) == len(LABELS)  # varied labels


def _our_entities(run_dir, words_list, spm_model_file):
  from seqeval.metrics.sequence_labeling import get_entities
  features = _features(words_list, spm_model_file)
  arrays = ner_features.features_to_arrays(features)
  logits = _our_logits(run_dir, arrays)
  labels = ner_features.assemble_predictions(
      features, logits.argmax(-1), [len(w) for w in words_list], LABELS)
  return [sorted((first, last, etype) for etype, first, last in
                 get_entities(seq)) for seq in labels], features


def _word_span(words, start, end):
  """(first, last) word of chars [start, end) of " ".join(words); HF's
  offsets of a word-start piece may include the space before it."""
  owner = []
  for i, word in enumerate(words):
    owner += [i] * len(word) + [None]
  inside = [w for w in owner[start:end] if w is not None]
  return inside[0], inside[-1]


def test_pipeline_entities_match_ours(hf_export, ner_run_dir, spm_model_file,
                                      ncbi_sentences):
  """Per-token pipeline output (aggregation "none": the pipeline's word
  heuristic splits words cut as a bare "▁" piece plus a symbol, e.g. " .")
  decoded at each word's first piece, as run_ner.py decodes."""
  from seqeval.metrics.sequence_labeling import get_entities
  ours, features = _our_entities(ner_run_dir, ncbi_sentences, spm_model_file)
  tagger = transformers.pipeline("token-classification", model=hf_export)
  by_sentence = {}
  for f in features:
    by_sentence.setdefault(f.sentence_index, []).append(f)
  compared, total = 0, 0
  for index, words in enumerate(ncbi_sentences):
    text = " ".join(words)
    windows = by_sentence[index]
    ids = [i for i, m in zip(windows[0].input_ids, windows[0].input_mask) if m]
    if len(windows) != 1 or ids != tagger.tokenizer(text)["input_ids"]:
      continue  # the two tokenizers cut this sentence differently
    token_label = {e["index"]: e["entity"] for e in tagger(text)}
    labels = ["O"] * len(words)
    for slot, word in enumerate(windows[0].word_ids):
      if word >= 0:
        labels[word] = token_label.get(slot, "O")
    got = sorted((first, last, etype)
                 for etype, first, last in get_entities(labels))
    assert got == ours[index], text
    compared += 1
    total += len(got)
  assert compared >= 30 and total > 20


def test_model_card_and_refusals(hf_export, ner_run_dir, tmp_path):
  card = open(os.path.join(hf_export, "README.md")).read()
  assert "AlbertForTokenClassification" in card
  assert "NCBI-disease" in card and "| test | 0.5000 | 0.2500 |" in card
  assert "decoded by viterbi (test)" in card
  assert "B-Disease" in card and "global step %d" % STEP in card

  def start(*args):  # both at once: each is mostly a start-up
    return subprocess.Popen([sys.executable, "-m", "bio.serving.export_hf",
                             *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)

  def finish(proc):
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

  (tmp_path / "empty").mkdir()
  again = start("--model_dir=" + ner_run_dir, "--output_dir=" + hf_export)
  not_ner = start("--model_dir=%s" % (tmp_path / "empty"),
                  "--output_dir=%s" % (tmp_path / "out"))
  again, not_ner = finish(again), finish(not_ner)
  assert again.returncode == 1 and "is not empty" in again.stderr
  assert not_ner.returncode == 1 and "label_map.json" in not_ner.stderr
  assert "Traceback" not in not_ner.stderr
  assert not (tmp_path / "out").exists()


def test_a_crf_run_is_refused_not_exported_without_its_crf(
    spm_model_file, random_ner_run, tmp_path):
  run = random_ner_run(str(tmp_path / "run"), spm_model_file, crf=True)
  proc = subprocess.run(
      [sys.executable, "-m", "bio.serving.export_hf", "--model_dir=" + run,
       "--output_dir=%s" % (tmp_path / "hf")], capture_output=True, text=True,
      cwd=ROOT, timeout=300)
  assert proc.returncode == 1
  assert "has a CRF head" in proc.stderr and "bio.serving.export" in \
      proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "hf").exists()


def test_an_ensemble_directory_is_refused_naming_the_way_out(tmp_path):
  from bio.ner import run_dir  # pylint: disable=g-import-not-at-top
  from bio.serving import export_hf  # pylint: disable=g-import-not-at-top
  ensemble_dir = tmp_path / "ens"
  ensemble_dir.mkdir()
  (ensemble_dir / run_dir.ENSEMBLE_FILE).write_text(json.dumps(
      {"members": [{"run_dir": "a"}, {"run_dir": "b"}]}))
  with pytest.raises(export_hf.HfConvertError,
                     match="holds an ensemble .* bio.serving.export$"):
    export_hf.run_dir_options(str(ensemble_dir), str(tmp_path / "hf"))
  assert not (tmp_path / "hf").exists()
