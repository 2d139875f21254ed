"""SavedModel exports: the NER serving graph and the encoder feature extractor.

The NER model here has random weights (a big classifier scale so that labels
are varied and argmax never hinges on float noise): what is tested is that
the in-graph path (word split, pieces, windows, entity decoding) gives what
the Python path of run_ner.py (bio.ner.features) gives for the same weights.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import export_to_tfhub
from albert import modeling
from albert import tokenization
from bio.serving import export
from bio.ner import decoding
from bio.ner import iob
from bio.ner import features as ner_features
from bio.text import word_tokenize
from tests.bio import tiny_ner

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TINY = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
LABELS = ["O", "B-Chemical", "B-Disease", "I-Chemical", "I-Disease"]
MAX_SEQ = 16  # small, so that ordinary sentences need several windows
UNICODE_TEXTS = [
    "β-catenin and Wnt signalling in colorectal cancer 😀 .",
    "The 5'-UTR of BRCA1-associated transcripts (α/β ratio 0.5) in E. coli .",
    "naïve T cells , Ångström-scale pores , and the ΔF508 mutation",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def ner_run_dir(tmp_path_factory, spm_model_file, random_ner_run):
  """A run_ner.py-style output dir holding a random 'fine-tuned' model."""
  return random_ner_run(str(tmp_path_factory.mktemp("ner") / "run"),
                        spm_model_file, LABELS, MAX_SEQ, step=7, seed=0)


@pytest.fixture(scope="module")
def ner_export(ner_run_dir, tmp_path_factory):
  export_dir = str(tmp_path_factory.mktemp("export") / "ner")
  export.export_ner(ner_run_dir, export_dir)
  return export_dir


def _python_entities(texts, run_dir, spm_model_file, decode="argmax"):
  """Entities by the training-side path: ner_features + the tokens model,
  decoded as run_ner.py decodes (bio.ner.decoding)."""
  tokenizer = tokenization.FullTokenizer(None, do_lower_case=True,
                                         spm_model_file=spm_model_file)
  encoder = ner_features.PieceEncoder(tokenizer, do_lower_case=True)
  label_map = {label: i for i, label in enumerate(LABELS)}
  words = [word_tokenize.tokenize_with_offsets(t) for t in texts]
  features = []
  for i, sentence in enumerate(words):
    features.extend(ner_features.convert_sentence(
        i, [w for w, _, _ in sentence], None, label_map, MAX_SEQ, encoder))
  p = tiny_ner.window_probabilities(
      os.path.join(run_dir, "best", "model.ckpt-7"),
      ner_features.features_to_arrays(features), len(LABELS), TINY)
  rows = ner_features.assemble_word_values(features, p,
                                          [len(s) for s in words])
  labels = decoding.decode(rows, LABELS, decode)
  word_prob = [[float(probs[LABELS.index(label)])
                for probs, label in zip(row, seq)]
               for row, seq in zip(rows, labels)]
  from seqeval.metrics.sequence_labeling import get_entities
  out = []
  for sentence, seq, probs_of in zip(words, labels, word_prob):
    ents = []
    for etype, first, last in get_entities(seq):
      ents.append((sentence[first][1], sentence[last][2], etype,
                   float(np.mean(probs_of[first:last + 1]))))
    out.append(ents)
  return out


@pytest.fixture(scope="module")
def ncbi_texts(ner_dir):
  sentences = iob.read_iob_file(os.path.join(ner_dir, "NCBI-disease",
                                                  "test.tsv"))
  texts = []
  for s in sentences[:60]:
    text = " ".join(s.tokens)
    # Only sentences whose words the raw-text tokenizer gives back unchanged.
    if word_tokenize.tokenize(text) == list(s.tokens):
      texts.append(text)
  assert len(texts) >= 40
  return texts


def _nul_texts(ncbi_texts):
  """Two sentences, then the same with a NUL, with a BEL, between them."""
  text = ncbi_texts[0] + " " + ncbi_texts[1]
  cut = len(ncbi_texts[0])
  return [text, text[:cut] + "\x00" + text[cut + 1:],
          text[:cut] + "\x07" + text[cut + 1:]]


@pytest.fixture(scope="module")
def served_groups(ner_export, ncbi_texts, serve_texts):
  """{test: (texts, what the export served for them)}: one serving process
  for the tests below (each start-up costs seconds)."""
  groups = {
      # Many windows for the long one.
      "training_path": (ncbi_texts + [" ".join(ncbi_texts[:8])] +
                        UNICODE_TEXTS),
      "unicode": UNICODE_TEXTS,
      "nul": _nul_texts(ncbi_texts),
  }
  out = serve_texts(ner_export, [t for g in groups.values() for t in g])
  result, start = {}, 0
  for name, texts in groups.items():
    result[name] = (texts, dict(out, entities=out["entities"][
        start:start + len(texts)]))
    start += len(texts)
  assert start == len(out["entities"])
  return result


def test_serving_matches_training_path(served_groups, ner_run_dir,
                                       spm_model_file):
  texts, served = served_groups["training_path"]
  assert served["leaked"] == []
  assert {"serving_default", "tokens"} <= set(served["signatures"])
  expected = _python_entities(texts, ner_run_dir, spm_model_file)
  total = 0
  for text, got, want in zip(texts, served["entities"], expected):
    assert [(s, e, t) for s, e, t, _, _ in got] == \
        [(s, e, t) for s, e, t, _ in want], text
    for (s, e, _, score, surface), (_, _, _, want_score) in zip(got, want):
      assert surface == text[s:e]
      assert score == pytest.approx(want_score, abs=1e-5)
    total += len(got)
  assert total > 50  # the random model tags plenty: the check has teeth


def _options(export_dir):
  with open(os.path.join(export_dir, "assets",
                         export.SERVING_OPTIONS_FILE)) as f:
    return json.load(f)


def test_viterbi_export_matches_training_path(ner_run_dir, ncbi_texts,
                                              served_groups, tmp_path,
                                              serve_texts, spm_model_file):
  export_dir = str(tmp_path / "viterbi")
  export.export_ner(ner_run_dir, export_dir,
                    opts=export.ServingOptions(decode="viterbi"))
  assert _options(export_dir)["decode"] == "viterbi"
  texts, argmax_served = served_groups["training_path"]
  served = serve_texts(export_dir, texts)
  expected = _python_entities(texts, ner_run_dir, spm_model_file, "viterbi")
  for text, got, want in zip(texts, served["entities"], expected):
    assert [(s, e, t) for s, e, t, _, _ in got] == \
        [(s, e, t) for s, e, t, _ in want], text
    for (_, _, _, score, _), (_, _, _, want_score) in zip(got, want):
      assert score == pytest.approx(want_score, abs=1e-5)
  # The random model's argmax breaks IOB2 often: the two decoders differ.
  assert served["entities"] != argmax_served["entities"]


def test_crf_export_of_a_model_without_a_crf_head_is_refused(ner_run_dir,
                                                             tmp_path):
  export_dir = str(tmp_path / "crf")
  with pytest.raises(export.ExportError,
                     match="--decode=crf needs a model fine-tuned with"):
    export.export_ner(ner_run_dir, export_dir,
                      opts=export.ServingOptions(decode="crf"))
  assert not os.path.exists(export_dir)


def test_export_decodes_as_the_run_chose(ner_export):
  # The run has no dev results, so it chose (as before --decode) by argmax.
  assert _options(ner_export)["decode"] == "argmax"


def test_unicode_offsets_slice_exactly(served_groups):
  _, served = served_groups["unicode"]
  for text, ents in zip(UNICODE_TEXTS, served["entities"]):
    for start, end, _, _, surface in ents:
      assert 0 <= start < end <= len(text)
      assert text[start:end] == surface
      # Entities start and end on word edges of the raw-text tokenizer.
      edges = word_tokenize.tokenize_with_offsets(text)
      assert start in {s for _, s, _ in edges}
      assert end in {e for _, _, e in edges}
  assert served["entities"][3] == [] and served["entities"][4] == []


def test_saved_model_cli_lists_signatures(ner_export):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  if not os.path.exists(cli):
    pytest.skip("saved_model_cli not installed beside this interpreter")
  proc = subprocess.run([cli, "show", "--dir", ner_export, "--all"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  for name in ("serving_default", "tokens", "num_entities", "starts",
               "probabilities", "input_ids"):
    assert name in proc.stdout
  assets = os.listdir(os.path.join(ner_export, "assets"))
  assert "label_map.json" in assets
  assert any(a.endswith(".model") for a in assets)


def test_export_rejects_bad_model_dir(tmp_path, ner_run_dir):
  def start(*args):  # both at once: each is mostly a TensorFlow start-up
    return subprocess.Popen([sys.executable, "-m", "bio.serving.export",
                             *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
  (tmp_path / "empty").mkdir()
  missing = start("--model_dir=%s" % (tmp_path / "nope"),
                  "--export_dir=%s" % (tmp_path / "out"))
  not_ner = start("--model_dir=%s" % (tmp_path / "empty"),
                  "--export_dir=%s" % (tmp_path / "out"))
  missing, not_ner = _finish(missing), _finish(not_ner)
  assert missing.returncode != 0 and "does not exist" in missing.stderr
  assert not_ner.returncode != 0 and "label_map.json" in not_ner.stderr
  assert not (tmp_path / "out").exists()


def test_encoder_export_matches_graph(tmp_path, run_python):
  config = modeling.AlbertConfig.from_json_file(TINY)
  rng = np.random.RandomState(3)
  ids = rng.randint(5, config.vocab_size, size=(2, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  segments = np.zeros_like(ids)
  segments[:, 6:] = 1
  with tf.Graph().as_default():
    model = modeling.AlbertModel(config, False, tf.constant(ids),
                                 tf.constant(mask), tf.constant(segments))
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      want_seq, want_pooled = sess.run([model.get_sequence_output(),
                                        model.get_pooled_output()])
      ckpt = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
  export_dir = str(tmp_path / "encoder")
  export_to_tfhub.export_encoder(TINY, ckpt, export_dir)
  code = r"""
import json
import numpy as np
import tensorflow as tf
sig = tf.saved_model.load(%r).signatures["tokens"]
out = sig(input_ids=tf.constant(%s, tf.int32), input_mask=tf.constant(%s,
          tf.int32), segment_ids=tf.constant(%s, tf.int32))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))
""" % (export_dir, ids.tolist(), mask.tolist(), segments.tolist())
  # An encoder export is not something bio.serving.tag can use: clear
  # refusal (started first, to run beside the serving process).
  refused = _start_tag_cli("--saved_model=" + export_dir, "--input=/dev/null",
                           "--output=%s" % (tmp_path / "never.jsonl"))
  got = run_python(code)
  np.testing.assert_allclose(got["sequence_output"], want_seq, atol=1e-5)
  np.testing.assert_allclose(got["pooled_output"], want_pooled, atol=1e-5)
  proc = _finish(refused)
  assert proc.returncode != 0 and "not a NER export" in proc.stderr


def _start_tag_cli(*args):
  """bio.serving.tag in the background. Tests start their runs together:
  each is mostly a TensorFlow start-up."""
  return subprocess.Popen([sys.executable, "-m", "bio.serving.tag", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT)


def _finish(proc):
  out, err = proc.communicate(timeout=300)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _tag_cli(*args):
  return _finish(_start_tag_cli(*args))


def _articles_with_abstract(path):
  import gzip
  import xml.etree.ElementTree as ET
  with gzip.open(path) as f:
    root = ET.parse(f).getroot()
  return [a.findtext(".//PMID") for a in root.iter("PubmedArticle")
          if a.find(".//Abstract/AbstractText") is not None]


def test_tag_pubmed_to_pubtator_and_jsonl(ner_export, pubmed_dir, tmp_path):
  xml = os.path.join(pubmed_dir, "pubmed26n1334.xml.gz")
  out = tmp_path / "tags.pubtator"
  lines_file = tmp_path / "abstracts.txt"
  lines_file.write_text("β-catenin in colorectal cancer .\n\nBRCA1 mutation "
                        "carriers\n", encoding="utf-8")
  jsonl = tmp_path / "tags.jsonl"
  pubtator_run = _start_tag_cli(
      "--saved_model=" + ner_export, "--input=" + xml, "--output=%s" % out,
      "--format=pubtator", "--batch_size=7")
  jsonl_run = _start_tag_cli("--saved_model=" + ner_export,
                             "--input=%s" % lines_file,
                             "--output=%s" % jsonl)
  proc = _finish(pubtator_run)
  assert proc.returncode == 0, proc.stderr[-2000:]
  docs = [d for d in out.read_text(encoding="utf-8").split("\n\n") if d]
  pmids = []
  annotations = 0
  for doc in docs:
    lines = doc.split("\n")
    pmid, kind, title = lines[0].split("|", 2)
    assert kind == "t" and lines[1].startswith(pmid + "|a|")
    text = title + " " + lines[1].split("|", 2)[2]
    for line in lines[2:]:
      doc_id, start, end, mention, _ = line.split("\t")
      assert doc_id == pmid and text[int(start):int(end)] == mention
      annotations += 1
    pmids.append(pmid)
  assert pmids == _articles_with_abstract(xml)
  assert annotations > 0

  proc = _finish(jsonl_run)
  assert proc.returncode == 0, proc.stderr[-2000:]
  records = [json.loads(l) for l in jsonl.read_text(encoding="utf-8")
             .splitlines()]
  assert [r["id"] for r in records] == ["1", "3"]
  for r in records:
    for e in r["entities"]:
      assert r["text"][e["start"]:e["end"]] == e["text"]


def test_tag_bad_and_empty_input(ner_export, tmp_path):
  from bio.serving import tag

  def fake_tagger(texts):
    raise AssertionError("never called for empty input")

  empty = tmp_path / "empty.txt"
  empty.write_text("")
  out = tmp_path / "empty.jsonl"
  assert tag.tag_file(fake_tagger, str(empty), str(out)) == (0, 0)
  assert out.read_text() == ""

  # A malformed document is skipped into `problems`; --strict stops there.
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"fine line\n\xff\xfe broken\n")
  problems = []
  no_entities = lambda texts: {"num_entities": [0] * len(texts)}
  assert tag.tag_file(no_entities, str(bad), str(tmp_path / "bad.jsonl"),
                      problems=problems) == (1, 0)
  assert [(p.doc_id, "not valid UTF-8" in p.reason) for p in problems] == [
      ("2", True)]
  with pytest.raises(tag.TagError, match=r"document 2: not valid UTF-8"):
    tag.tag_file(no_entities, str(bad), str(tmp_path / "strict.jsonl"),
                 strict=True)
  assert not (tmp_path / "strict.jsonl").exists()
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]

  not_xml = tmp_path / "notxml.xml"
  not_xml.write_text("this is not xml")
  not_xml_run = _start_tag_cli(
      "--saved_model=" + ner_export, "--input=%s" % not_xml,
      "--input_format=pubmed",  # auto would read it as text
      "--output=%s" % (tmp_path / "x.jsonl"))
  missing_run = _start_tag_cli("--saved_model=%s" % (tmp_path / "missing"),
                               "--input=%s" % empty, "--output=%s" % out)
  proc = _finish(not_xml_run)
  assert proc.returncode != 0 and "notxml.xml" in proc.stderr
  assert not (tmp_path / "x.jsonl").exists()
  proc = _finish(missing_run)
  assert proc.returncode != 0 and "does not exist" in proc.stderr


# ------------------------------------------------- export dir (issue 11) ---

def test_export_never_deletes_what_is_not_an_export(ner_run_dir, tmp_path,
                                                    monkeypatch):
  before = sorted(os.listdir(ner_run_dir))
  with pytest.raises(export_to_tfhub.ExportDirError, match="no SavedModel"):
    export.export_ner(ner_run_dir, ner_run_dir, overwrite=True)
  assert sorted(os.listdir(ner_run_dir)) == before
  (tmp_path / "mine.txt").write_text("user data")
  monkeypatch.chdir(tmp_path)
  with pytest.raises(export_to_tfhub.ExportDirError, match="not empty"):
    export.export_ner(ner_run_dir, ".", overwrite=True)
  assert os.listdir(tmp_path) == ["mine.txt"]


def test_previous_export_replaced_only_with_overwrite(ner_run_dir,
                                                      spm_model_file,
                                                      tmp_path):
  out = str(tmp_path / "ner")
  export.export_ner(ner_run_dir, out)
  (tmp_path / "ner" / "stale.txt").write_text("from the old export")
  with pytest.raises(export_to_tfhub.ExportDirError, match="--overwrite"):
    export.export_ner(ner_run_dir, out)
  assert (tmp_path / "ner" / "stale.txt").exists()
  export.export_ner(ner_run_dir, out, overwrite=True)
  assert not (tmp_path / "ner" / "stale.txt").exists()
  assert sorted(os.listdir(tmp_path)) == ["ner"]
  with open(os.path.join(out, "assets", "spm_record.json")) as f:
    record = json.load(f)
  from albert import vocab_record
  assert record["sha256"] == vocab_record.sha256_file(spm_model_file)


def test_export_to_a_non_local_filesystem(ner_run_dir, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  export.export_ner(ner_run_dir, "ram://exports/ner")
  assert tf.io.gfile.exists("ram://exports/ner/saved_model.pb")
  assert tf.io.gfile.exists("ram://exports/ner/assets/label_map.json")
  assert os.listdir(tmp_path) == []  # no local folder named `ram:`


def test_nul_and_control_characters_are_whitespace(served_groups,
                                                   ncbi_texts):
  texts, served = served_groups["nul"]
  text = texts[0]
  cut = len(ncbi_texts[0])
  assert texts[1][cut] == "\x00" and texts[2][cut] == "\x07"
  served = served["entities"]
  after = [e for e in served[0] if e[0] > cut]
  assert after, "the check needs entities after the NUL"
  want = [(s, e, t) for s, e, t, _, _ in served[0]]
  for got in served[1:]:
    assert [(s, e, t) for s, e, t, _, _ in got] == want
    for s, e, _, _, surface in got:
      assert surface == text[s:e]


def test_encoder_export_mlm_and_sop_signatures(tmp_path, run_python):
  from albert import run_pretraining
  config = modeling.AlbertConfig.from_json_file(TINY)
  rng = np.random.RandomState(5)
  ids = rng.randint(5, config.vocab_size, size=(2, 10)).astype(np.int32)
  mask = np.ones_like(ids)
  segments = np.zeros_like(ids)
  positions = np.array([[1, 4, 7], [0, 2, 9]], np.int32)
  with tf.Graph().as_default():
    model = modeling.AlbertModel(config, False, tf.constant(ids),
                                 tf.constant(mask), tf.constant(segments))
    pos = tf.constant(positions)
    _, _, mlm = run_pretraining.get_masked_lm_output(
        config, model.get_sequence_output(), model.get_embedding_table(),
        pos, tf.zeros_like(pos), tf.zeros_like(pos, tf.float32))
    _, _, sop = run_pretraining.get_sentence_order_output(
        config, model.get_pooled_output(), tf.zeros([2], tf.int32))
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      want_mlm, want_sop = sess.run([mlm, sop])
      ckpt = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
  export_dir = str(tmp_path / "encoder")
  export_to_tfhub.export_encoder(TINY, ckpt, export_dir)
  code = r"""
import json
import tensorflow as tf
sigs = tf.saved_model.load(%r).signatures
args = dict(input_ids=tf.constant(%s, tf.int32),
            input_mask=tf.constant(%s, tf.int32),
            segment_ids=tf.constant(%s, tf.int32))
mlm = sigs["mlm"](mlm_positions=tf.constant(%s, tf.int32), **args)
sop = sigs["sop"](**args)
print(json.dumps({"mlm": tf.nn.log_softmax(mlm["mlm_logits"]).numpy().tolist(),
                  "sop": sop["sop_log_probs"].numpy().tolist()}))
""" % (export_dir, ids.tolist(), mask.tolist(), segments.tolist(),
       positions.tolist())
  got = run_python(code)
  np.testing.assert_allclose(got["mlm"], want_mlm, atol=1e-4)
  np.testing.assert_allclose(got["sop"], want_sop, atol=1e-5)


def test_tag_output_paths_are_checked_before_anything_is_written(tmp_path):
  from bio.serving import tag

  def never(texts):
    raise AssertionError("the model is never called")

  text = tmp_path / "in.txt"
  text.write_text("BRCA1 mutation carriers\n")
  with pytest.raises(tag.TagError, match=r"directory .*missing does not "
                     r"exist"):
    tag.tag_file(never, str(text), str(tmp_path / "missing" / "out.jsonl"))
  assert not (tmp_path / "missing").exists()
  with pytest.raises(tag.TagError, match="is the --input file"):
    tag.tag_file(never, str(text), str(text))
  assert text.read_text() == "BRCA1 mutation carriers\n"
  proc = _tag_cli("--saved_model=%s" % (tmp_path / "nope"),
                  "--input=%s" % text,
                  "--output=%s" % (tmp_path / "missing" / "out.jsonl"))
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "does not exist (create it first)" in proc.stderr


def test_tag_unloadable_saved_model_is_a_tag_error(tmp_path):
  from bio.serving import tag
  (tmp_path / "saved_model.pb").write_bytes(b"not a protobuf")
  with pytest.raises(tag.TagError, match="cannot be loaded"):
    tag.load_model(str(tmp_path))


def test_export_refuses_another_sentencepiece_model(ner_run_dir, tmp_path):
  import shutil
  from albert import vocab_record
  run_copy = str(tmp_path / "run")
  shutil.copytree(ner_run_dir, run_copy)
  vocab_record.write(run_copy, TINY)  # recorded: some other file
  with pytest.raises(export.ExportError,
                     match="is not the SentencePiece model of --model_dir"):
    export.export_ner(run_copy, str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()
