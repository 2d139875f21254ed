"""Tests for albert.modeling against an independent NumPy ALBERT.

Checkpoints are written from a hand-made table of upstream variable names and
shapes (plain tf.Variables, not our model code), restored into AlbertModel,
and the outputs compared with a float64 NumPy forward pass.
"""
import collections
import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from albert import modeling

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "albert",
                          "configs")

# Parameter counts of AlbertModel (embeddings + encoder + pooler).
EXPECTED_PARAMS = {
    "albert_base": 11683584,
    "albert_large": 17683968,
    "albert_xlarge": 58724864,
    "albert_xxlarge": 222595584,
    "bioalbert_base": 11683584,
    "bioalbert_large": 17683968,
    "albert_tiny": 34400,
}

# Several groups and inner groups, E != H, 3 token types and dropout in the
# config (which is_training=False must switch off).
GROUPED_CONFIG = {
    "vocab_size": 50, "embedding_size": 8, "hidden_size": 12,
    "num_hidden_layers": 3, "num_hidden_groups": 2, "inner_group_num": 2,
    "num_attention_heads": 3, "intermediate_size": 20,
    "max_position_embeddings": 16, "type_vocab_size": 3,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
}


def load_tiny_dict():
  with open(os.path.join(CONFIG_DIR, "albert_tiny.json")) as f:
    return json.load(f)


def expected_variables(c):
  """Upstream's variable names and shapes for config dict `c`."""
  e, h, i = c["embedding_size"], c["hidden_size"], c["intermediate_size"]
  t = collections.OrderedDict()
  t["bert/embeddings/word_embeddings"] = [c["vocab_size"], e]
  t["bert/embeddings/token_type_embeddings"] = [c["type_vocab_size"], e]
  t["bert/embeddings/position_embeddings"] = [c["max_position_embeddings"], e]
  t["bert/embeddings/LayerNorm/beta"] = [e]
  t["bert/embeddings/LayerNorm/gamma"] = [e]
  if e != h:
    t["bert/encoder/embedding_hidden_mapping_in/kernel"] = [e, h]
    t["bert/encoder/embedding_hidden_mapping_in/bias"] = [h]
  for g in range(c.get("num_hidden_groups", 1)):
    for k in range(c.get("inner_group_num", 1)):
      p = "bert/encoder/transformer/group_%d/inner_group_%d/" % (g, k)
      for part in ("query", "key", "value"):
        t[p + "attention_1/self/%s/kernel" % part] = [h, h]
        t[p + "attention_1/self/%s/bias" % part] = [h]
      t[p + "attention_1/output/dense/kernel"] = [h, h]
      t[p + "attention_1/output/dense/bias"] = [h]
      t[p + "LayerNorm/beta"] = [h]
      t[p + "LayerNorm/gamma"] = [h]
      t[p + "ffn_1/intermediate/dense/kernel"] = [h, i]
      t[p + "ffn_1/intermediate/dense/bias"] = [i]
      t[p + "ffn_1/intermediate/output/dense/kernel"] = [i, h]
      t[p + "ffn_1/intermediate/output/dense/bias"] = [h]
      t[p + "LayerNorm_1/beta"] = [h]
      t[p + "LayerNorm_1/gamma"] = [h]
  t["bert/pooler/dense/kernel"] = [h, h]
  t["bert/pooler/dense/bias"] = [h]
  return t


def random_params(c, seed):
  """Random values for every variable, scaled so attention is not uniform."""
  rng = np.random.RandomState(seed)
  params = collections.OrderedDict()
  for name, shape in expected_variables(c).items():
    if name.endswith("/gamma"):
      value = 1.0 + 0.2 * rng.randn(*shape)
    elif name.endswith("/beta") or name.endswith("/bias"):
      value = 0.2 * rng.randn(*shape)
    elif name.endswith("/kernel"):
      value = rng.randn(*shape) / np.sqrt(shape[0])
    else:
      value = rng.randn(*shape)
    params[name] = value.astype(np.float32)
  return params


def write_checkpoint(params, prefix):
  """Saves `params` under their names with plain tf.Variables."""
  with tf.Graph().as_default():
    var_list = {name: tf.Variable(value, name="v%d" % n)
                for n, (name, value) in enumerate(params.items())}
    saver = tf.train.Saver(var_list=var_list)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      saver.save(sess, prefix)
  return prefix


def np_layer_norm(x, gamma, beta):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def np_gelu(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) *
                                  (x + 0.044715 * x ** 3)))


def np_softmax(x):
  x = x - x.max(-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(-1, keepdims=True)


def np_albert(params, c, ids, mask, types):
  """Float64 ALBERT forward pass (inference, no dropout)."""
  p = {k: v.astype(np.float64) for k, v in params.items()}
  batch, seq = ids.shape
  h_size = c["hidden_size"]
  heads = c["num_attention_heads"]
  d = h_size // heads
  layers, groups = c["num_hidden_layers"], c.get("num_hidden_groups", 1)

  x = (p["bert/embeddings/word_embeddings"][ids] +
       p["bert/embeddings/token_type_embeddings"][types] +
       p["bert/embeddings/position_embeddings"][:seq][None])
  emb = np_layer_norm(x, p["bert/embeddings/LayerNorm/gamma"],
                      p["bert/embeddings/LayerNorm/beta"])
  h = emb
  if c["embedding_size"] != h_size:
    h = (h @ p["bert/encoder/embedding_hidden_mapping_in/kernel"] +
         p["bert/encoder/embedding_hidden_mapping_in/bias"])
  adder = (1.0 - mask[:, None, None, :].astype(np.float64)) * -10000.0

  def split_heads(t):
    return t.reshape(batch, seq, heads, d).transpose(0, 2, 1, 3)

  outputs = []
  for layer in range(layers):
    group = layer * groups // layers
    for k in range(c.get("inner_group_num", 1)):
      pre = "bert/encoder/transformer/group_%d/inner_group_%d/" % (group, k)
      a = pre + "attention_1/"
      q, kk, v = [split_heads(h @ p[a + "self/%s/kernel" % n] +
                              p[a + "self/%s/bias" % n])
                  for n in ("query", "key", "value")]
      scores = q @ kk.transpose(0, 1, 3, 2) / np.sqrt(d) + adder
      ctx = (np_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(
          batch, seq, h_size)
      attn = ctx @ p[a + "output/dense/kernel"] + p[a + "output/dense/bias"]
      x1 = np_layer_norm(attn + h, p[pre + "LayerNorm/gamma"],
                         p[pre + "LayerNorm/beta"])
      f = pre + "ffn_1/intermediate/"
      inter = np_gelu(x1 @ p[f + "dense/kernel"] + p[f + "dense/bias"])
      ffn = inter @ p[f + "output/dense/kernel"] + p[f + "output/dense/bias"]
      h = np_layer_norm(ffn + x1, p[pre + "LayerNorm_1/gamma"],
                        p[pre + "LayerNorm_1/beta"])
      outputs.append(h)
  pooled = np.tanh(h[:, 0] @ p["bert/pooler/dense/kernel"] +
                   p["bert/pooler/dense/bias"])
  return {"embedding_output": emb, "all_encoder_layers": outputs,
          "pooled_output": pooled}


def make_inputs(c, seed=7, batch=3, seq=7):
  rng = np.random.RandomState(seed)
  ids = rng.randint(0, c["vocab_size"], size=(batch, seq)).astype(np.int32)
  mask = np.ones((batch, seq), np.int32)
  mask[1, 5:] = 0
  mask[2, 3:] = 0
  types = rng.randint(0, c["type_vocab_size"], size=(batch, seq))
  return ids, mask, types.astype(np.int32)


def var_name(v):
  return v.name.split(":")[0]


@pytest.fixture(scope="module", params=["tiny", "grouped"])
def case(request, tmp_path_factory):
  c = load_tiny_dict() if request.param == "tiny" else dict(GROUPED_CONFIG)
  params = random_params(c, seed=1)
  prefix = str(tmp_path_factory.mktemp("ckpt_" + request.param) / "model")
  write_checkpoint(params, prefix)
  return request.param, c, params, prefix


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
  c = load_tiny_dict()
  params = random_params(c, seed=2)
  prefix = str(tmp_path_factory.mktemp("tiny_ckpt") / "model")
  write_checkpoint(params, prefix)
  return c, params, prefix


def test_restore_upstream_checkpoint_matches_numpy(case):
  _, c, params, prefix = case
  config = modeling.AlbertConfig.from_dict(c)
  ids, mask, types = make_inputs(c)
  with tf.Graph().as_default():
    model = modeling.AlbertModel(
        config, is_training=False, input_ids=tf.constant(ids),
        input_mask=tf.constant(mask), token_type_ids=tf.constant(types))
    tvars = tf.trainable_variables()
    model_vars = {var_name(v): v.shape.as_list() for v in tvars}
    ckpt_vars = dict(tf.train.list_variables(prefix))
    # No missing and no unexpected variable, same shapes.
    assert model_vars == {k: list(v) for k, v in ckpt_vars.items()}

    amap, initialized = modeling.get_assignment_map_from_checkpoint(
        tvars, prefix)
    assert isinstance(amap, collections.OrderedDict)
    assert dict(amap) == {n: n for n in model_vars}
    assert all(n in initialized and n + ":0" in initialized
               for n in model_vars)
    tf.train.init_from_checkpoint(prefix, amap)

    # Same variables, the reshape+matmul and one-hot code paths.
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
      model2 = modeling.AlbertModel(
          config, is_training=False, input_ids=tf.constant(ids),
          input_mask=tf.constant(mask), token_type_ids=tf.constant(types),
          use_einsum=False, use_one_hot_embeddings=True, scope="bert")
    assert len(tf.trainable_variables()) == len(tvars)

    fetch = {
        "embedding_output": model.get_embedding_output(),
        "word_embedding_output": model.get_word_embedding_output(),
        "all_encoder_layers": model.get_all_encoder_layers(),
        "sequence_output": model.get_sequence_output(),
        "pooled_output": model.get_pooled_output(),
        "table": model.get_embedding_table(),
        "seq2": model2.get_sequence_output(),
        "pooled2": model2.get_pooled_output(),
    }
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      got = sess.run(fetch)

  ref = np_albert(params, c, ids, mask, types)
  n_out = c["num_hidden_layers"] * c.get("inner_group_num", 1)
  assert len(got["all_encoder_layers"]) == len(ref["all_encoder_layers"])
  assert len(got["all_encoder_layers"]) == n_out
  np.testing.assert_array_equal(got["table"],
                                params["bert/embeddings/word_embeddings"])
  np.testing.assert_allclose(got["word_embedding_output"],
                             params["bert/embeddings/word_embeddings"][ids],
                             atol=1e-6)
  np.testing.assert_allclose(got["embedding_output"], ref["embedding_output"],
                             atol=1e-5)
  for i, (g, r) in enumerate(zip(got["all_encoder_layers"],
                                 ref["all_encoder_layers"])):
    np.testing.assert_allclose(g, r, atol=1e-5, err_msg="layer %d" % i)
  np.testing.assert_allclose(got["sequence_output"],
                             ref["all_encoder_layers"][-1], atol=1e-5)
  np.testing.assert_allclose(got["pooled_output"], ref["pooled_output"],
                             atol=1e-5)
  np.testing.assert_allclose(got["seq2"], ref["all_encoder_layers"][-1],
                             atol=1e-5)
  np.testing.assert_allclose(got["pooled2"], ref["pooled_output"], atol=1e-5)
  # The attention must actually depend on context (else the test is weak).
  assert np.abs(ref["pooled_output"]).max() > 0.1


def test_padding_does_not_change_real_tokens(tiny_ckpt):
  c, params, prefix = tiny_ckpt
  config = modeling.AlbertConfig.from_dict(c)
  rng = np.random.RandomState(3)
  real = rng.randint(0, c["vocab_size"], size=(2, 4)).astype(np.int32)
  pad_a = rng.randint(0, c["vocab_size"], size=(2, 3)).astype(np.int32)
  pad_b = np.zeros((2, 3), np.int32)
  ids = np.concatenate([np.concatenate([real, pad_a], 1),
                        np.concatenate([real, pad_b], 1)], 0)
  mask = np.array([[1] * 4 + [0] * 3] * 4, np.int32)
  with tf.Graph().as_default():
    short = modeling.AlbertModel(config, False, tf.constant(real))
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
      padded = modeling.AlbertModel(config, False, tf.constant(ids),
                                    input_mask=tf.constant(mask), scope="bert")
      unmasked = modeling.AlbertModel(config, False, tf.constant(ids),
                                      scope="bert")
    amap, _ = modeling.get_assignment_map_from_checkpoint(
        tf.trainable_variables(), prefix)
    tf.train.init_from_checkpoint(prefix, amap)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      s, p, u = sess.run([short.get_sequence_output(),
                          padded.get_sequence_output(),
                          unmasked.get_sequence_output()])
  np.testing.assert_allclose(p[:2, :4], s, atol=1e-5)
  np.testing.assert_allclose(p[2:, :4], s, atol=1e-5)
  # Without the mask the pad tokens do leak into the real positions.
  assert np.abs(u[:2, :4] - s).max() > 1e-3


def test_save_restore_in_fresh_graph(tmp_path):
  c = load_tiny_dict()
  config = modeling.AlbertConfig.from_dict(c)
  ids, mask, types = make_inputs(c, seed=11)
  prefix = str(tmp_path / "model.ckpt")

  def build():
    model = modeling.AlbertModel(config, False, tf.constant(ids),
                                 tf.constant(mask), tf.constant(types))
    return [model.get_sequence_output(), model.get_pooled_output()]

  with tf.Graph().as_default():
    tf.set_random_seed(5)
    outputs = build()
    saver = tf.train.Saver()
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      before = sess.run(outputs)
      saver.save(sess, prefix)

  saved = {k: list(v) for k, v in tf.train.list_variables(prefix)}
  assert saved == dict(expected_variables(c))

  with tf.Graph().as_default():
    tf.set_random_seed(99)  # a different init, overwritten by the restore
    outputs = build()
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      fresh = sess.run(outputs)
      tf.train.Saver().restore(sess, prefix)
      after = sess.run(outputs)
  assert np.abs(fresh[0] - before[0]).max() > 1e-3
  for b, a in zip(before, after):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_assignment_map_with_groups(tiny_ckpt):
  """A 1-group checkpoint initialises both groups of a 2-group model."""
  c, params, prefix = tiny_ckpt
  c2 = dict(c, num_hidden_groups=2)
  config = modeling.AlbertConfig.from_dict(c2)
  with tf.Graph().as_default():
    modeling.AlbertModel(config, False, tf.zeros([1, 5], tf.int32))
    tvars = tf.trainable_variables()
    names = [var_name(v) for v in tvars]
    assert sorted(names) == sorted(expected_variables(c2))

    amap0, init0 = modeling.get_assignment_map_from_checkpoint(tvars, prefix)
    # Without num_of_group, group_1 has no counterpart in the checkpoint.
    assert {n for n in names if "/group_1/" in n}.isdisjoint(init0)
    assert set(amap0.values()) == {n for n in names if "/group_1/" not in n}

    maps, init = modeling.get_assignment_map_from_checkpoint(
        tvars, prefix, num_of_group=2)
    assert isinstance(maps, list) and len(maps) == 2
    assigned = [name for m in maps for name in m.values()]
    assert sorted(assigned) == sorted(names)
    assert all(n in init for n in names)
    for m in maps:
      for ckpt_name, model_name in m.items():
        assert ckpt_name == model_name.replace("/group_1/", "/group_0/")
      tf.train.init_from_checkpoint(prefix, m)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      values = sess.run({var_name(v): v for v in tvars})
  for name, value in values.items():
    source = name.replace("/group_1/", "/group_0/")
    np.testing.assert_array_equal(value, params[source], err_msg=name)

  maps1, _ = modeling.get_assignment_map_from_checkpoint(
      tvars, prefix, num_of_group=1)
  assert len(maps1) == 1 and dict(maps1[0]) == dict(amap0)


def test_assignment_map_bad_checkpoints(tiny_ckpt, tmp_path):
  c, _, prefix = tiny_ckpt
  config = modeling.AlbertConfig.from_dict(dict(c, vocab_size=900))
  with tf.Graph().as_default():
    modeling.AlbertModel(config, False, tf.zeros([1, 5], tf.int32))
    tvars = tf.trainable_variables()
    with pytest.raises(ValueError) as err:
      modeling.get_assignment_map_from_checkpoint(tvars, prefix)
    msg = str(err.value)
    assert "bert/embeddings/word_embeddings" in msg
    assert "[1000, 16]" in msg and "[900, 16]" in msg
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(ValueError, match="no_such_model"):
      modeling.get_assignment_map_from_checkpoint(tvars, missing)


def test_layer_sharing():
  c = dict(GROUPED_CONFIG)
  config = modeling.AlbertConfig.from_dict(c)
  ids, mask, types = make_inputs(c)
  with tf.Graph().as_default():
    model = modeling.AlbertModel(config, False, tf.constant(ids),
                                 tf.constant(mask), tf.constant(types))
    layers = model.get_all_encoder_layers()
    q1 = [v for v in tf.trainable_variables() if var_name(v) ==
          "bert/encoder/transformer/group_1/inner_group_0/attention_1/self/"
          "query/kernel"][0]
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      before = sess.run(layers)
      # Random: a constant shift would cancel on the zero-mean LayerNorm input.
      noise = np.random.RandomState(6).randn(*q1.shape.as_list())
      sess.run(q1.assign_add(noise.astype(np.float32)))
      after = sess.run(layers)
  # Layers 0-1 (outputs 0-3) use group_0, layer 2 (outputs 4-5) group_1.
  for i in range(4):
    np.testing.assert_array_equal(before[i], after[i])
  assert np.abs(before[4] - after[4]).max() > 1e-4

  # With one group, the variable set does not grow with depth.
  shapes = []
  for depth in (1, 3):
    with tf.Graph().as_default():
      cfg = modeling.AlbertConfig.from_dict(
          dict(load_tiny_dict(), num_hidden_layers=depth))
      model = modeling.AlbertModel(cfg, False, tf.zeros([1, 4], tf.int32))
      assert len(model.get_all_encoder_layers()) == depth
      shapes.append({var_name(v): v.shape.as_list()
                     for v in tf.trainable_variables()})
  assert shapes[0] == shapes[1]


def test_dropout_only_when_training():
  config = modeling.AlbertConfig.from_dict(dict(GROUPED_CONFIG))
  ids, mask, types = make_inputs(GROUPED_CONFIG)
  with tf.Graph().as_default():
    train = modeling.AlbertModel(config, True, tf.constant(ids),
                                 tf.constant(mask), tf.constant(types))
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
      infer = modeling.AlbertModel(config, False, tf.constant(ids),
                                   tf.constant(mask), tf.constant(types),
                                   scope="bert")
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      t1, t2, e1, e2 = [sess.run(m.get_sequence_output())
                        for m in (train, train, infer, infer)]
  assert np.abs(t1 - t2).max() > 1e-3
  np.testing.assert_array_equal(e1, e2)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_shipped_configs(name):
  path = os.path.join(CONFIG_DIR, name + ".json")
  with open(path) as f:
    raw = json.load(f)
  config = modeling.AlbertConfig.from_json_file(path)
  assert config.to_dict() == raw
  for key in ("net_structure_type", "gap_size", "num_memory_blocks"):
    assert raw[key] == 0
  assert raw["vocab_size"] == (1000 if name == "albert_tiny" else 30000)
  if name != "albert_tiny":
    assert raw["embedding_size"] == 128
    assert raw["hidden_dropout_prob"] == 0
    assert raw["attention_probs_dropout_prob"] == 0
  # Shapes only: the graph is built but never run.
  with tf.Graph().as_default():
    modeling.AlbertModel(config, False, tf.zeros([1, 8], tf.int32))
    got = {var_name(v): v.shape.as_list() for v in tf.trainable_variables()}
  assert got == dict(expected_variables(raw))
  assert sum(int(np.prod(s)) for s in got.values()) == EXPECTED_PARAMS[name]


def test_bioalbert_configs_equal_albert():
  for size in ("base", "large"):
    with open(os.path.join(CONFIG_DIR, "bioalbert_%s.json" % size)) as f:
      bio = json.load(f)
    with open(os.path.join(CONFIG_DIR, "albert_%s.json" % size)) as f:
      ref = json.load(f)
    assert bio == ref


def test_config_round_trip_keeps_extra_keys(tmp_path):
  raw = dict(load_tiny_dict(), layers_to_keep=[], custom_note="x")
  path = tmp_path / "albert_config.json"
  path.write_text(json.dumps(raw))
  config = modeling.AlbertConfig.from_json_file(str(path))
  assert config.net_structure_type == 0 and config.layers_to_keep == []
  again = modeling.AlbertConfig.from_dict(json.loads(config.to_json_string()))
  assert again.to_dict() == raw
  defaults = modeling.AlbertConfig(vocab_size=7)
  assert (defaults.hidden_size, defaults.num_attention_heads,
          defaults.intermediate_size, defaults.embedding_size) == (
              4096, 64, 16384, 128)


@pytest.mark.parametrize("text, needles", [
    ('{"vocab_size": 30000,\n  "hidden_size": }\n',
     ["albert_config.json:2", "not a valid JSON"]),
    ('{"hidden_size": 32, "num_attention_heads": 2}', ["vocab_size",
                                                       "missing"]),
    ('{"vocab_size": 100, "hidden_size": "768"}', ["hidden_size", "integer"]),
    ('{"vocab_size": 100, "num_hidden_layers": 2.0}',
     ["num_hidden_layers", "integer"]),
    ('{"vocab_size": true}', ["vocab_size", "integer"]),
    ('{"vocab_size": 100, "hidden_dropout_prob": "0.1"}',
     ["hidden_dropout_prob", "number"]),
    ('{"vocab_size": 100, "hidden_dropout_prob": 1.5}',
     ["hidden_dropout_prob", "[0, 1)"]),
    ('{"vocab_size": 100, "hidden_act": "swish"}', ["hidden_act", "gelu"]),
    ('{"vocab_size": 100, "hidden_size": 30, "num_attention_heads": 4}',
     ["hidden_size", "multiple"]),
    ('{"vocab_size": 0}', ["vocab_size", ">= 1"]),
    ('[1, 2]', ["JSON object"]),
])
def test_bad_config_files(tmp_path, text, needles):
  path = tmp_path / "albert_config.json"
  path.write_text(text)
  with pytest.raises(ValueError) as err:
    modeling.AlbertConfig.from_json_file(str(path))
  msg = str(err.value)
  assert str(path) in msg
  for needle in needles:
    assert needle in msg, msg


def test_layer_norm_matches_contrib():
  rng = np.random.RandomState(0)
  # Variance ~1e-8: an epsilon of 1e-6 (or Keras' 1e-3) would change the
  # result a lot; contrib's 1e-12 does not.
  x = (1e-4 * rng.randn(2, 3, 16)).astype(np.float32)
  gamma = rng.randn(16).astype(np.float32)
  beta = rng.randn(16).astype(np.float32)
  with tf.Graph().as_default():
    inp = tf.constant(x)
    with tf.variable_scope("block"):
      out = modeling.layer_norm(inp)
      out_1 = modeling.layer_norm(inp)
      named = modeling.layer_norm_and_dropout(inp, 0.0, name="custom")
    names = [var_name(v) for v in tf.trainable_variables()]
    assert names == ["block/LayerNorm/beta", "block/LayerNorm/gamma",
                     "block/LayerNorm_1/beta", "block/LayerNorm_1/gamma",
                     "block/custom/beta", "block/custom/gamma"]
    model_vars = tf.get_collection(tf.GraphKeys.MODEL_VARIABLES)
    assert len(model_vars) == 6
    v = {var_name(t): t for t in tf.trainable_variables()}
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      plain = sess.run(named)
      sess.run([v["block/LayerNorm/gamma"].assign(gamma),
                v["block/LayerNorm/beta"].assign(beta)])
      got, got_1 = sess.run([out, out_1])
  x64 = x.astype(np.float64)
  ref = np_layer_norm(x64, gamma, beta)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(plain, np_layer_norm(x64, 1.0, 0.0), atol=1e-4)
  np.testing.assert_allclose(got_1, plain, atol=1e-6)
  mean = x64.mean(-1, keepdims=True)
  loose = ((x64 - mean) / np.sqrt(x64.var(-1, keepdims=True) + 1e-6) *
           gamma + beta)
  assert np.abs(loose - ref).max() > 0.1


def test_small_ops_match_numpy():
  rng = np.random.RandomState(4)
  x = rng.randn(4, 5, 6).astype(np.float32)
  w3 = rng.randn(6, 2, 3).astype(np.float32)
  x4 = rng.randn(4, 5, 2, 3).astype(np.float32)
  wp = rng.randn(2, 3, 6).astype(np.float32)
  to_mask = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]], np.int32)
  with tf.Graph().as_default():
    dyn = tf.placeholder(tf.float32, [None, 5, 6])
    shape = modeling.get_shape_list(dyn, expected_rank=3)
    assert isinstance(shape[0], tf.Tensor) and shape[1:] == [5, 6]
    with pytest.raises(ValueError, match="expected rank"):
      modeling.assert_rank(dyn, 2)
    mat = modeling.reshape_to_matrix(dyn)
    back = modeling.reshape_from_matrix(mat, [4, 5, 6])
    fetch = {
        "gelu": modeling.gelu(tf.constant(x)),
        "proj3": modeling.einsum_via_matmul(tf.constant(x), tf.constant(w3),
                                            1),
        "proj2": modeling.einsum_via_matmul(tf.constant(x4), tf.constant(wp),
                                            2),
        "mask": modeling.create_attention_mask_from_input_mask(
            tf.constant(x), tf.constant(to_mask)),
        "mat": mat, "back": back,
    }
    with tf.Session() as sess:
      got = sess.run(fetch, {dyn: x})
  np.testing.assert_allclose(got["gelu"], np_gelu(x.astype(np.float64)),
                             atol=1e-6)
  np.testing.assert_allclose(got["proj3"], np.einsum("bfh,hnd->bfnd", x, w3),
                             atol=1e-5)
  np.testing.assert_allclose(got["proj2"], np.einsum("bfnd,ndh->bfh", x4, wp),
                             atol=1e-5)
  np.testing.assert_array_equal(
      got["mask"], np.broadcast_to(to_mask[:, None, :], (4, 5, 3)))
  assert got["mat"].shape == (20, 6)
  np.testing.assert_array_equal(got["back"], x)

  assert modeling.get_activation("gelu") is modeling.gelu
  assert modeling.get_activation("ReLU") is tf.nn.relu
  assert modeling.get_activation("linear") is None
  assert modeling.get_activation("") is None
  assert modeling.get_activation(tf.tanh) is tf.tanh
  with pytest.raises(ValueError, match="Unsupported activation"):
    modeling.get_activation("swish")


def test_sequence_longer_than_positions_is_rejected():
  c = dict(GROUPED_CONFIG)  # max_position_embeddings 16
  config = modeling.AlbertConfig.from_dict(c)
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match="max_position_embeddings"):
      modeling.AlbertModel(config, False, tf.zeros([1, 17], tf.int32))


def test_dynamic_shapes_match_numpy(tiny_ckpt):
  c, params, prefix = tiny_ckpt
  config = modeling.AlbertConfig.from_dict(c)
  with tf.Graph().as_default():
    ids_ph = tf.placeholder(tf.int32, [None, None])
    mask_ph = tf.placeholder(tf.int32, [None, None])
    types_ph = tf.placeholder(tf.int32, [None, None])
    model = modeling.AlbertModel(config, False, ids_ph, mask_ph, types_ph)
    amap, _ = modeling.get_assignment_map_from_checkpoint(
        tf.trainable_variables(), prefix)
    tf.train.init_from_checkpoint(prefix, amap)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      for batch, seq in ((3, 7), (4, 11)):
        ids, mask, types = make_inputs(c, seed=seq, batch=batch, seq=seq)
        got = sess.run(model.get_pooled_output(),
                       {ids_ph: ids, mask_ph: mask, types_ph: types})
        ref = np_albert(params, c, ids, mask, types)["pooled_output"]
        np.testing.assert_allclose(got, ref, atol=1e-5)
