# coding=utf-8
"""Name and config mapping between this project's ALBERT checkpoints and
Hugging Face `transformers` ALBERT models (shared by export_hf, import_hf).

Weights (TF variable -> HF state-dict key; dense kernels are transposed,
HF `Linear.weight` being [out, in]):

  bert/embeddings/{word,position,token_type}_embeddings
      -> {P}embeddings.{...}_embeddings.weight
  bert/embeddings/LayerNorm/{gamma,beta} -> {P}embeddings.LayerNorm.{weight,bias}
  bert/encoder/embedding_hidden_mapping_in/{kernel,bias}
      -> {P}encoder.embedding_hidden_mapping_in.{weight,bias}
  bert/encoder/transformer/group_G/inner_group_I/...
      -> {P}encoder.albert_layer_groups.G.albert_layers.I.
         attention_1/self/{query,key,value} -> attention.{query,key,value}
         attention_1/output/dense           -> attention.dense
         LayerNorm                          -> attention.LayerNorm
         ffn_1/intermediate/dense           -> ffn
         ffn_1/intermediate/output/dense    -> ffn_output
         LayerNorm_1                        -> full_layer_layer_norm
  bert/pooler/dense                         -> {P}pooler
  cls/predictions/transform/dense           -> predictions.dense
  cls/predictions/transform/LayerNorm       -> predictions.LayerNorm
  cls/predictions/output_bias               -> predictions.bias
  cls/seq_relationship/output_{weights,bias} -> sop_classifier.classifier
  <classifier weights, bias> ([labels, hidden]) -> classifier (no transpose)

{P} is "albert." in models with a head and "" in a bare `AlbertModel`.
The MLM decoder weight is the word embedding table in both (tied), so it is
not stored. Without `embedding_hidden_mapping_in` (embedding_size ==
hidden_size) TF skips the projection; HF always applies it, so the export
writes an identity matrix and a zero bias, and the import accepts exactly
those.

Activations: this project's "gelu" is the tanh approximation, HF's
"gelu_new" (also "gelu_pytorch_tanh"); HF's "gelu" (erf) has no counterpart
and is refused, as are configs HF's ALBERT cannot express (see
`check_expressible`).
"""
import dataclasses
import re

import numpy as np

# TF config hidden_act -> HF hidden_act, and back.
TF_TO_HF_ACT = {"gelu": "gelu_new", "relu": "relu", "tanh": "tanh",
                "linear": "linear"}
HF_TO_TF_ACT = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
                "relu": "relu", "tanh": "tanh", "linear": "linear"}
LAYER_NORM_EPS = 1e-12  # modeling.layer_norm's variance epsilon (float32)

ENCODER = "encoder"
PRETRAINING = "pretraining"
MASKED_LM = "masked_lm"
TOKEN_CLASSIFICATION = "token_classification"
HEADS = (PRETRAINING, MASKED_LM, ENCODER, TOKEN_CLASSIFICATION)
ARCHITECTURES = {ENCODER: "AlbertModel", PRETRAINING: "AlbertForPreTraining",
                 MASKED_LM: "AlbertForMaskedLM",
                 TOKEN_CLASSIFICATION: "AlbertForTokenClassification"}

MAPPING_IN = "bert/encoder/embedding_hidden_mapping_in/"
# Variables of training state, never weights of the model.
_TRAINING_STATE_RE = re.compile(r"(/adam_[mv]$)|(^global_step$)")

# Inside one inner group: TF sub-scope -> HF module, and whether it is a
# dense layer (kernel/bias) or a LayerNorm (gamma/beta).
_BLOCK = (("attention_1/self/query", "attention.query", "dense"),
          ("attention_1/self/key", "attention.key", "dense"),
          ("attention_1/self/value", "attention.value", "dense"),
          ("attention_1/output/dense", "attention.dense", "dense"),
          ("LayerNorm", "attention.LayerNorm", "norm"),
          ("ffn_1/intermediate/dense", "ffn", "dense"),
          ("ffn_1/intermediate/output/dense", "ffn_output", "dense"),
          ("LayerNorm_1", "full_layer_layer_norm", "norm"))


class HfConvertError(ValueError):
  """A checkpoint, directory or config that cannot be converted."""


@dataclasses.dataclass(frozen=True)
class Param:
  """One weight: its TF variable name, HF key and whether to transpose."""
  tf_name: str
  hf_name: str
  transpose: bool = False


@dataclasses.dataclass(frozen=True)
class Parts:
  """Which parts a model has besides the encoder."""
  prefix: str = "albert."
  pooler: bool = False
  masked_lm: bool = False
  sentence_order: bool = False
  classifier: tuple = None  # (TF weights name, TF bias name) or None


def head_parts(head, classifier=None):
  """The `Parts` of the HF architecture of `head`."""
  if head == ENCODER:
    return Parts(prefix="", pooler=True)
  if head == PRETRAINING:
    return Parts(pooler=True, masked_lm=True, sentence_order=True)
  if head == MASKED_LM:
    return Parts(masked_lm=True)
  if head == TOKEN_CLASSIFICATION:
    if not classifier:
      raise HfConvertError("a token-classification export needs the TF names "
                           "of the classifier's weights and bias")
    return Parts(classifier=tuple(classifier))
  raise HfConvertError("unknown head %r (one of %s)" % (head,
                                                        ", ".join(HEADS)))


def _dense(tf_scope, hf_module):
  return [Param(tf_scope + "/kernel", hf_module + ".weight", True),
          Param(tf_scope + "/bias", hf_module + ".bias")]


def _norm(tf_scope, hf_module):
  return [Param(tf_scope + "/gamma", hf_module + ".weight"),
          Param(tf_scope + "/beta", hf_module + ".bias")]


def encoder_params(config, prefix):
  """Params of the embeddings and the transformer (no pooler)."""
  params = []
  for name in ("word", "position", "token_type"):
    params.append(Param("bert/embeddings/%s_embeddings" % name,
                        "%sembeddings.%s_embeddings.weight" % (prefix, name)))
  params += _norm("bert/embeddings/LayerNorm", prefix + "embeddings.LayerNorm")
  params += _dense(MAPPING_IN.rstrip("/"),
                   prefix + "encoder.embedding_hidden_mapping_in")
  for group in range(config["num_hidden_groups"]):
    for inner in range(config["inner_group_num"]):
      tf_scope = "bert/encoder/transformer/group_%d/inner_group_%d/" % (
          group, inner)
      hf_scope = "%sencoder.albert_layer_groups.%d.albert_layers.%d." % (
          prefix, group, inner)
      for tf_sub, hf_sub, kind in _BLOCK:
        make = _dense if kind == "dense" else _norm
        params += make(tf_scope + tf_sub, hf_scope + hf_sub)
  return params


def param_table(config, parts):
  """Every `Param` of a model with `parts`, for config dict `config`."""
  params = encoder_params(config, parts.prefix)
  if parts.pooler:
    params += _dense("bert/pooler/dense", parts.prefix + "pooler")
  if parts.masked_lm:
    params += _dense("cls/predictions/transform/dense", "predictions.dense")
    params += _norm("cls/predictions/transform/LayerNorm",
                    "predictions.LayerNorm")
    params.append(Param("cls/predictions/output_bias", "predictions.bias"))
  if parts.sentence_order:
    params += [Param("cls/seq_relationship/output_weights",
                     "sop_classifier.classifier.weight"),
               Param("cls/seq_relationship/output_bias",
                     "sop_classifier.classifier.bias")]
  if parts.classifier:
    weights, bias = parts.classifier
    params += [Param(weights, "classifier.weight"),
               Param(bias, "classifier.bias")]
  return params


def is_training_state(name):
  """Optimizer slots (adam_m/adam_v) and global_step."""
  return bool(_TRAINING_STATE_RE.search(name))


def tf_group_of_layer(layer, config):
  return int(layer / config["num_hidden_layers"] * config["num_hidden_groups"])


def hf_group_of_layer(layer, config):
  return int(layer / (config["num_hidden_layers"] /
                      config["num_hidden_groups"]))


def check_expressible(config):
  """Raises HfConvertError for an ALBERT config HF's ALBERT cannot run the
  same way (TF config dict)."""
  act = config.get("hidden_act", "gelu")
  if act not in TF_TO_HF_ACT:
    raise HfConvertError("hidden_act %r has no Hugging Face counterpart (%s)"
                         % (act, ", ".join(sorted(TF_TO_HF_ACT))))
  for key in ("net_structure_type", "gap_size", "num_memory_blocks"):
    if config.get(key, 0):
      raise HfConvertError("%s=%r: Hugging Face's ALBERT has no such "
                           "structure" % (key, config[key]))
  layers, groups = config["num_hidden_layers"], config["num_hidden_groups"]
  if not 1 <= groups <= layers:
    raise HfConvertError("num_hidden_groups=%d with num_hidden_layers=%d: "
                         "every group must hold a layer" % (groups, layers))
  tf_groups = [tf_group_of_layer(l, config) for l in range(layers)]
  hf_groups = [hf_group_of_layer(l, config) for l in range(layers)]
  if tf_groups != hf_groups or sorted(set(tf_groups)) != list(range(groups)):
    raise HfConvertError(
        "num_hidden_layers=%d, num_hidden_groups=%d: layers share groups "
        "differently here (%s) and in Hugging Face (%s)"
        % (layers, groups, tf_groups, hf_groups))


def to_hf_config(config, head, labels=None, special_ids=None):
  """The HF config.json dict of TF config dict `config`.

  Args:
    config: albert_config.json fields.
    head: one of HEADS.
    labels: label list in id order (token classification).
    special_ids: {"pad_token_id", "bos_token_id", "eos_token_id"} from the
      SentencePiece model.
  """
  check_expressible(config)
  hf = {"architectures": [ARCHITECTURES[head]], "model_type": "albert"}
  for key in ("vocab_size", "embedding_size", "hidden_size",
              "num_hidden_layers", "num_hidden_groups", "num_attention_heads",
              "intermediate_size", "inner_group_num", "hidden_dropout_prob",
              "attention_probs_dropout_prob", "max_position_embeddings",
              "type_vocab_size", "initializer_range"):
    hf[key] = config[key]
  hf.update(hidden_act=TF_TO_HF_ACT[config.get("hidden_act", "gelu")],
            layer_norm_eps=LAYER_NORM_EPS, position_embedding_type="absolute",
            classifier_dropout_prob=0.1, torch_dtype="float32")
  hf.update(special_ids or {})
  if labels is not None:
    hf["id2label"] = {str(i): label for i, label in enumerate(labels)}
    hf["label2id"] = {label: i for i, label in enumerate(labels)}
  return hf


def from_hf_config(hf):
  """The albert_config.json dict of HF config dict `hf` (refuses what the
  TF graph cannot run identically)."""
  if hf.get("model_type", "albert") != "albert":
    raise HfConvertError("model_type %r: not an ALBERT model"
                         % hf.get("model_type"))
  act = hf.get("hidden_act", "gelu_new")
  if act not in HF_TO_TF_ACT:
    raise HfConvertError(
        "hidden_act %r: this project's ALBERT has no such activation (its "
        "gelu is HF's gelu_new; HF's exact-erf gelu differs)" % act)
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise HfConvertError("position_embedding_type %r: only absolute position "
                         "embeddings exist here"
                         % hf["position_embedding_type"])
  eps = hf.get("layer_norm_eps", LAYER_NORM_EPS)
  if not np.isclose(eps, LAYER_NORM_EPS, rtol=1e-6, atol=0):
    raise HfConvertError("layer_norm_eps=%g: LayerNorm here uses %g"
                         % (eps, LAYER_NORM_EPS))
  config = {}
  for key in ("vocab_size", "embedding_size", "hidden_size",
              "num_hidden_layers", "num_hidden_groups", "inner_group_num",
              "num_attention_heads", "intermediate_size"):
    config[key] = int(hf[key])
  config["hidden_act"] = HF_TO_TF_ACT[act]
  for key, default in (("hidden_dropout_prob", 0.0),
                       ("attention_probs_dropout_prob", 0.0),
                       ("max_position_embeddings", 512),
                       ("type_vocab_size", 2), ("initializer_range", 0.02)):
    config[key] = hf.get(key, default)
  config.update(down_scale_factor=1, net_structure_type=0, gap_size=0,
                num_memory_blocks=0)
  check_expressible(config)
  return config


def identity_mapping(size):
  """Kernel and bias of an embedding_hidden_mapping_in that does nothing."""
  return np.eye(size, dtype=np.float32), np.zeros([size], np.float32)


def is_identity_mapping(weight, bias):
  size = bias.shape[0]
  return (weight.shape == (size, size) and
          np.array_equal(weight, np.eye(size, dtype=weight.dtype)) and
          not np.any(bias))


def _check_shapes(arrays, config):
  """Raises when the embedding or layer shapes contradict `config`."""
  expected = {
      "bert/embeddings/word_embeddings": [config["vocab_size"],
                                          config["embedding_size"]],
      "bert/embeddings/position_embeddings": [
          config["max_position_embeddings"], config["embedding_size"]],
      "bert/embeddings/token_type_embeddings": [config["type_vocab_size"],
                                                config["embedding_size"]],
      "bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/"
      "dense/kernel": [config["hidden_size"], config["intermediate_size"]],
  }
  for name, shape in expected.items():
    if name in arrays and list(arrays[name].shape) != shape:
      raise HfConvertError("%s has shape %s, the config says %s"
                           % (name, list(arrays[name].shape), shape))


def to_hf_tensors(arrays, config, parts):
  """HF state dict {key: contiguous array} from TF {variable: array}.

  Raises HfConvertError naming every TF variable the model needs but
  `arrays` lacks, or a shape that contradicts `config`.
  """
  arrays = dict(arrays)
  _check_shapes(arrays, config)
  if config["embedding_size"] == config["hidden_size"]:
    kernel, bias = identity_mapping(config["hidden_size"])
    arrays.setdefault(MAPPING_IN + "kernel", kernel)
    arrays.setdefault(MAPPING_IN + "bias", bias)
  tensors, missing = {}, []
  for param in param_table(config, parts):
    if param.tf_name not in arrays:
      missing.append(param.tf_name)
      continue
    value = arrays[param.tf_name]
    tensors[param.hf_name] = np.ascontiguousarray(
        value.T if param.transpose else value)
  if missing:
    raise HfConvertError("the checkpoint lacks %d variable(s) of the model: "
                         "%s" % (len(missing), ", ".join(missing)))
  return tensors


def to_tf_arrays(tensors, config, parts):
  """TF {variable: array} from an HF state dict (the inverse of
  `to_hf_tensors`); the identity embedding mapping is dropped when
  embedding_size == hidden_size."""
  arrays, missing = {}, []
  for param in param_table(config, parts):
    if param.hf_name not in tensors:
      missing.append(param.hf_name)
      continue
    value = tensors[param.hf_name]
    arrays[param.tf_name] = np.ascontiguousarray(
        value.T if param.transpose else value)
  if missing:
    raise HfConvertError("the Hugging Face weights lack %d tensor(s): %s"
                         % (len(missing), ", ".join(missing)))
  _check_shapes(arrays, config)
  if config["embedding_size"] == config["hidden_size"]:
    kernel = arrays.pop(MAPPING_IN + "kernel")
    bias = arrays.pop(MAPPING_IN + "bias")
    if not is_identity_mapping(kernel.T, bias):
      raise HfConvertError(
          "embedding_size == hidden_size but embedding_hidden_mapping_in is "
          "not the identity: the TF graph has no projection there")
  return arrays
