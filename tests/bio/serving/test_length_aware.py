"""The length-aware serving graph (issue 12) against the fixed-length one.

Exports of one random-weight tiny model: `fixed` pads every window to
max_seq_length in one call (the graph before issue 12, the reference);
`length` sorts windows by length and runs sub-batches padded to their
longest window, with a small token budget so that a request needs several
calls; `bf16` is `length` with the encoder in bfloat16. Served in a fresh
process on real NCBI-disease test sentences.
"""
import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import modeling
from bio.ner import iob
from bio.ner import model as ner_model
from bio.ner import run_dir as run_files
from bio.serving import export

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))
TINY = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
LABELS = ["O", "B-Disease", "I-Disease"]
MAX_SEQ = 64
OPTS = export.ServingOptions(max_batch_tokens=256, length_multiple=8)

_SERVE_BATCHES = r"""
import json
import tensorflow as tf
import tensorflow_text  # registers the SentencePiece ops
serve = tf.saved_model.load(EXPORT_DIR).signatures["serving_default"]
result = []
for texts in json.loads(BATCHES):
  out = serve(text=tf.constant(texts, tf.string))
  out = {k: v.numpy() for k, v in out.items()}
  result.append([[[int(out["starts"][i][j]), int(out["ends"][i][j]),
                   out["types"][i][j].decode(), float(out["scores"][i][j])]
                  for j in range(int(out["num_entities"][i]))]
                 for i in range(len(texts))])
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, spm_model_file):
  """A run_ner.py-style directory with random weights (varied labels)."""
  path = tmp_path_factory.mktemp("ner_run")
  config = modeling.AlbertConfig.from_json_file(TINY)
  with tf.Graph().as_default():
    # Before any op: a graph seed set later leaves the initializers unseeded,
    # and each run drew other weights (some with near-ties bf16 flipped).
    tf.set_random_seed(5)
    model = modeling.AlbertModel(config, False,
                                 tf.placeholder(tf.int32, [None, None]))
    ner_model.token_classifier(model.get_sequence_output(), len(LABELS),
                               False)
    with tf.variable_scope("ner", reuse=True):
      weights = tf.get_variable("output_weights")
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(weights.assign(np.random.RandomState(5).normal(
          0, 1.0, weights.shape.as_list())))
      os.makedirs(path / "best")
      tf.train.Saver().save(sess, str(path / "best" / "model.ckpt-1"))
  (path / run_files.LABEL_MAP_FILE).write_text(
      json.dumps({label: i for i, label in enumerate(LABELS)}))
  (path / run_files.BEST_CHECKPOINT_FILE).write_text("best/model.ckpt-1\n")
  (path / run_files.RUN_CONFIG_FILE).write_text(json.dumps({
      "albert_config_file": TINY, "spm_model_file": spm_model_file,
      "do_lower_case": True, "max_seq_length": MAX_SEQ}))
  return str(path)


@pytest.fixture(scope="module")
def exports(run_dir, tmp_path_factory):
  base = tmp_path_factory.mktemp("exports")
  variants = {
      "fixed": export.ServingOptions(length_aware=False),
      "length": OPTS,
      "bf16": export.ServingOptions(precision="bf16", max_batch_tokens=256,
                                    length_multiple=8),
  }
  for name, opts in variants.items():
    export.export_ner(run_dir, str(base / name), opts=opts)
  return {name: str(base / name) for name in variants}


@pytest.fixture(scope="module")
def texts(ner_dir):
  """180 NCBI-disease test sentences, a 3-word one and a 2,000-word text."""
  sentences = iob.read_iob_file(os.path.join(ner_dir, "NCBI-disease",
                                             "test.tsv"))
  joined = [" ".join(s.tokens) for s in sentences]
  long_words = " ".join(joined[200:]).split()[:2000]
  assert len(long_words) == 2000
  return {"ncbi": joined[:180], "short": "Huntington disease patients",
          "long": " ".join(long_words)}


def _serve(run_python, export_dir, batches):
  code = _SERVE_BATCHES.replace("EXPORT_DIR", repr(export_dir)).replace(
      "BATCHES", repr(json.dumps(batches)))
  return run_python(code)


def _same_entities(got, want, tolerance):
  """Entities (start, end, type) equal, scores within `tolerance`."""
  assert [e[:3] for e in got] == [e[:3] for e in want]
  for g, w in zip(got, want):
    assert g[3] == pytest.approx(w[3], abs=tolerance)


def test_length_aware_equals_fixed_length(exports, texts, run_python):
  batches = [texts["ncbi"][:64], texts["ncbi"][64:72], texts["ncbi"][72:],
             [texts["long"]] + texts["ncbi"][:20]]
  fixed = _serve(run_python, exports["fixed"], batches)
  length = _serve(run_python, exports["length"], batches)
  total = 0
  for got_batch, want_batch in zip(length, fixed):
    for got, want in zip(got_batch, want_batch):
      _same_entities(got, want, 1e-5)
      total += len(want)
  assert total > 300  # the model tags plenty: the check has teeth


def test_short_and_long_text_together_as_alone(exports, texts, run_python):
  short, long_text = texts["short"], texts["long"]
  out = _serve(run_python, exports["length"],
               [[short, long_text], [short], [long_text], [long_text, short]])
  together, short_alone, long_alone, reversed_ = out
  _same_entities(together[0], short_alone[0], 1e-5)
  _same_entities(together[1], long_alone[0], 1e-5)
  _same_entities(reversed_[1], short_alone[0], 1e-5)
  _same_entities(reversed_[0], long_alone[0], 1e-5)
  assert len(long_alone[0]) > 50


def _calls(window_lengths, max_len, opts):
  """(rows, width) of each model call plan_sub_batches makes, and the
  windows each call holds, for windows of the given lengths."""
  with tf.Graph().as_default():
    lengths = tf.constant(window_lengths, tf.int32)
    plan = export.plan_sub_batches(lengths, tf.constant(max_len), opts)
    with tf.Session() as sess:
      order, starts, ends, widths = sess.run(plan)
  return [(order[s:e], w) for s, e, w in zip(starts, ends, widths)]


def test_sub_batch_shapes_are_bounded(texts):
  rng = np.random.RandomState(0)
  shapes = set()
  for _ in range(40):  # requests of every size, lengths as real windows
    lengths = rng.randint(3, MAX_SEQ + 1, size=rng.randint(1, 200))
    calls = _calls(lengths, MAX_SEQ, OPTS)
    seen = np.sort(np.concatenate([rows for rows, _ in calls]))
    assert (seen == np.arange(len(lengths))).all()  # each window once
    for rows, width in calls:
      assert width % OPTS.length_multiple == 0 and width <= MAX_SEQ
      assert lengths[rows].max() <= width  # every window fits its call
      assert len(rows) * width <= OPTS.max_batch_tokens
      shapes.add((len(rows), width))
  # Widths: the multiples of 8 up to 64; rows: at most 256 // width each.
  bound = sum(OPTS.max_batch_tokens // w for w in range(8, MAX_SEQ + 1, 8))
  assert len(shapes) <= bound
  # A 3-word sentence beside a long text is never padded to the text's width.
  calls = _calls([5, MAX_SEQ, MAX_SEQ, 9], MAX_SEQ, OPTS)
  assert [(sorted(rows.tolist()), w) for rows, w in calls] == [
      ([0], 8), ([3], 16), ([1, 2], 64)]


def _graph_ops(export_dir):
  """(op type, dtype attr T, name) of every node with a type attribute T,
  function bodies (the sub-batch loop) included."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  graph = proto.meta_graphs[0].graph_def
  nodes = list(graph.node)
  for function in graph.library.function:
    nodes.extend(function.node_def)
  return [(n.op, tf.as_dtype(n.attr["T"].type), n.name) for n in nodes
          if "T" in n.attr and n.attr["T"].WhichOneof("value") == "type"]


def test_bf16_export_computes_bf16_matmuls(exports, texts, run_python):
  matmuls = ("MatMul", "BatchMatMulV2", "Einsum")
  fp32_ops = [t for op, t, _ in _graph_ops(exports["length"])
              if op in matmuls]
  assert tf.float32 in fp32_ops and tf.bfloat16 not in fp32_ops
  encoder = [(op, t) for op, t, name in _graph_ops(exports["bf16"])
             if op in matmuls and "/encoder/" in name]
  # The dense layers (einsums) and the attention products are bfloat16;
  # only the float32 attention-mask product (ones x mask) is not.
  assert all(t == tf.bfloat16 for op, t in encoder if op == "Einsum")
  low = sum(t == tf.bfloat16 for _, t in encoder)
  assert low >= 4 * (len(encoder) - low) > 0
  with open(os.path.join(exports["bf16"], "assets",
                         export.SERVING_OPTIONS_FILE)) as f:
    assert json.load(f)["precision"] == "bf16"
  batches = [texts["ncbi"]]
  fixed = _serve(run_python, exports["fixed"], batches)[0]
  bf16 = _serve(run_python, exports["bf16"], batches)[0]
  want = [tuple(e[:3]) + (i,) for i, ents in enumerate(fixed) for e in ents]
  got = [tuple(e[:3]) + (i,) for i, ents in enumerate(bf16) for e in ents]
  same = len(set(want) & set(got))
  assert same >= 0.97 * max(len(want), len(got)), (same, len(want), len(got))


def test_encoder_export_precision(run_dir, tmp_path, run_python):
  from albert import export_to_tfhub  # pylint: disable=g-import-not-at-top
  checkpoint = os.path.join(run_dir, "best", "model.ckpt-1")
  paths = {}
  for precision in ("fp32", "bf16"):
    paths[precision] = str(tmp_path / precision)
    export_to_tfhub.export_encoder(TINY, checkpoint, paths[precision],
                                   precision=precision)
    with open(os.path.join(paths[precision], "assets",
                           export_to_tfhub.EXPORT_OPTIONS_FILE)) as f:
      assert json.load(f)["precision"] == precision
  einsums = [t for op, t, name in _graph_ops(paths["bf16"])
             if op == "Einsum" and "/encoder/" in name]
  assert einsums and set(einsums) == {tf.bfloat16}
  code = ("import json, numpy as np, tensorflow as tf\n"
          "ids = tf.constant([[2, 40, 41, 42, 3, 0]])\n"
          "mask = tf.constant([[1, 1, 1, 1, 1, 0]])\n"
          "out = [tf.saved_model.load(p).signatures['tokens'](\n"
          "    input_ids=ids, input_mask=mask, segment_ids=0 * ids)\n"
          "    ['sequence_output'].numpy() for p in %r]\n"
          "print(json.dumps([str(out[1].dtype),\n"
          "    float(np.abs(out[0] - out[1]).max())]))" %
          [paths["fp32"], paths["bf16"]])
  dtype, difference = run_python(code)
  assert dtype == "float32" and 0 < difference < 0.1


_COUNT_TRACES = r"""
import json
import tensorflow as tf
import tensorflow_text  # registers the SentencePiece ops
from tensorflow.python.eager import context

def functions():
  # Every trace of a function (and every instantiated loop body) registers
  # a function definition in the eager context.
  return len(context.context().list_function_names())

serve = tf.saved_model.load(EXPORT_DIR).signatures["serving_default"]
requests = json.loads(REQUESTS)
serve(text=tf.constant(requests[0], tf.string))  # warm-up
warm, nodes = functions(), len(serve.graph.as_graph_def().node)
after = []
for texts in requests[1:]:
  serve(text=tf.constant(texts, tf.string))
  after.append(functions())

@tf.function
def control(x):  # no input signature: traced again for each new shape
  return x * 2
for n in (1, 2, 3):
  control(tf.zeros([n]))
print(json.dumps({"warm": warm, "after": after,
                  "nodes": [nodes, len(serve.graph.as_graph_def().node)],
                  "control": functions() - after[-1]}))
"""


def test_no_retrace_per_request_once_warm(exports, texts, run_python):
  ncbi = texts["ncbi"]
  # Requests of every size and length mix: 1..64 texts, a long text alone
  # and beside a short one, so the sub-batch loop runs 1 to many times.
  requests = [ncbi[:2], ncbi[:1], ncbi[5:12], ncbi[:64], [texts["long"]],
              [texts["short"], texts["long"]], ncbi[100:103], ncbi[20:84]]
  code = _COUNT_TRACES.replace("EXPORT_DIR", repr(exports["length"])).replace(
      "REQUESTS", repr(json.dumps(requests)))
  out = run_python(code)
  assert out["after"] == [out["warm"]] * len(out["after"])
  assert out["nodes"][0] == out["nodes"][1]
  # The count does see traces: the control function adds some.
  assert out["control"] >= 2
