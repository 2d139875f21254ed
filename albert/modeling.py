# coding=utf-8
# Port of google-research/albert modeling.py (Apache-2.0) to TF 2.15
# tf.compat.v1 graph mode, without tf.contrib.
"""The ALBERT model (https://arxiv.org/abs/1909.11942) and its building blocks.

Function names, arguments, variable scopes and variable shapes follow upstream
`google-research/albert/modeling.py`, so checkpoints written by the TF 1.15
code (e.g. the released ALBERT v2 models) restore here unchanged:

  bert/embeddings/{word,token_type,position}_embeddings, LayerNorm/{beta,gamma}
  bert/encoder/embedding_hidden_mapping_in/{kernel,bias}
  bert/encoder/transformer/group_<g>/inner_group_<i>/
      attention_1/self/{query,key,value}/{kernel,bias}
      attention_1/output/dense/{kernel,bias}
      LayerNorm/{beta,gamma}
      ffn_1/intermediate/dense/{kernel,bias}
      ffn_1/intermediate/output/dense/{kernel,bias}
      LayerNorm_1/{beta,gamma}
  bert/pooler/dense/{kernel,bias}
"""

import collections
import copy
import json
import math
import numbers
import re

import numpy as np
import tensorflow.compat.v1 as tf


# Fields of AlbertConfig and of the released albert_config.json files, with
# the JSON type each must have. Unknown keys are kept without checks.
_INT_FIELDS = ("vocab_size", "embedding_size", "hidden_size",
               "num_hidden_layers", "num_hidden_groups", "num_attention_heads",
               "intermediate_size", "inner_group_num",
               "max_position_embeddings", "type_vocab_size")
_EXTRA_INT_FIELDS = ("net_structure_type", "gap_size", "num_memory_blocks")
_FLOAT_FIELDS = ("down_scale_factor", "hidden_dropout_prob",
                 "attention_probs_dropout_prob", "initializer_range")
_PROB_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
_ACTIVATIONS = ("linear", "relu", "gelu", "tanh")


class AlbertConfig(object):
  """Configuration for `AlbertModel`.

  The default settings match the configuration of model `albert_xxlarge`.
  """

  def __init__(self,
               vocab_size,
               embedding_size=128,
               hidden_size=4096,
               num_hidden_layers=12,
               num_hidden_groups=1,
               num_attention_heads=64,
               intermediate_size=16384,
               inner_group_num=1,
               down_scale_factor=1,
               hidden_act="gelu",
               hidden_dropout_prob=0,
               attention_probs_dropout_prob=0,
               max_position_embeddings=512,
               type_vocab_size=2,
               initializer_range=0.02):
    """Constructs AlbertConfig.

    Args:
      vocab_size: Vocabulary size of `inputs_ids` in `AlbertModel`.
      embedding_size: size of the (factorized) token embeddings.
      hidden_size: Size of the encoder layers and the pooler layer.
      num_hidden_layers: Number of hidden layers in the Transformer encoder.
      num_hidden_groups: Number of groups of hidden layers; layers of one group
        share their parameters.
      num_attention_heads: Number of attention heads in each attention layer.
      intermediate_size: Size of the feed-forward ("intermediate") layer.
      inner_group_num: Number of attention+ffn blocks repeated in each layer.
      down_scale_factor: float, kept for compatibility with upstream configs.
      hidden_act: Non-linear activation (function or string) of the encoder
        feed-forward layer.
      hidden_dropout_prob: Dropout probability of the fully connected layers in
        the embeddings and encoder.
      attention_probs_dropout_prob: Dropout ratio of the attention
        probabilities.
      max_position_embeddings: Maximum sequence length the model can be used
        with.
      type_vocab_size: Vocabulary size of `token_type_ids`.
      initializer_range: Stddev of the truncated normal initializer of all
        weight matrices.
    """
    self.vocab_size = vocab_size
    self.embedding_size = embedding_size
    self.hidden_size = hidden_size
    self.num_hidden_layers = num_hidden_layers
    self.num_hidden_groups = num_hidden_groups
    self.num_attention_heads = num_attention_heads
    self.inner_group_num = inner_group_num
    self.down_scale_factor = down_scale_factor
    self.hidden_act = hidden_act
    self.intermediate_size = intermediate_size
    self.hidden_dropout_prob = hidden_dropout_prob
    self.attention_probs_dropout_prob = attention_probs_dropout_prob
    self.max_position_embeddings = max_position_embeddings
    self.type_vocab_size = type_vocab_size
    self.initializer_range = initializer_range

  @classmethod
  def from_dict(cls, json_object, source=None):
    """Constructs an `AlbertConfig` from a dict of parameters.

    Every key is kept (released configs carry e.g. `net_structure_type`,
    `gap_size`, `num_memory_blocks`). Known fields are type-checked.

    Args:
      json_object: dict of parameters; must contain `vocab_size`.
      source: (optional) name of the file the dict came from, for errors.

    Raises:
      ValueError: a field is missing, has the wrong type or is out of range.
    """
    where = source or "AlbertConfig"
    if not isinstance(json_object, dict):
      raise ValueError("%s: expected a JSON object of config fields, got %s" %
                       (where, type(json_object).__name__))
    _validate_config_dict(json_object, where)
    config = cls(vocab_size=None)
    for (key, value) in json_object.items():
      config.__dict__[key] = value
    return config

  @classmethod
  def from_json_file(cls, json_file):
    """Constructs an `AlbertConfig` from a json file of parameters."""
    with tf.io.gfile.GFile(json_file, "r") as reader:
      text = reader.read()
    try:
      json_object = json.loads(text)
    except ValueError as e:
      lineno = getattr(e, "lineno", None)
      where = "%s:%d" % (json_file, lineno) if lineno else json_file
      raise ValueError("%s: not a valid JSON config file: %s" %
                       (where, getattr(e, "msg", str(e)))) from e
    return cls.from_dict(json_object, source=json_file)

  def to_dict(self):
    """Serializes this instance to a Python dictionary."""
    output = copy.deepcopy(self.__dict__)
    return output

  def to_json_string(self):
    """Serializes this instance to a JSON string."""
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def _validate_config_dict(d, where):
  """Raises ValueError naming `where` and the field for a malformed config."""
  if d.get("vocab_size") is None:
    raise ValueError("%s: missing required field `vocab_size` (a positive "
                     "integer)" % where)
  for key in _INT_FIELDS + _EXTRA_INT_FIELDS:
    if key not in d:
      continue
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
      raise ValueError("%s: field `%s` must be an integer, got %r (%s)" %
                       (where, key, value, type(value).__name__))
    if key in _INT_FIELDS and value < 1:
      raise ValueError("%s: field `%s` must be >= 1, got %d" %
                       (where, key, value))
  for key in _FLOAT_FIELDS:
    if key not in d:
      continue
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
      raise ValueError("%s: field `%s` must be a number, got %r (%s)" %
                       (where, key, value, type(value).__name__))
    if key in _PROB_FIELDS and not 0.0 <= value < 1.0:
      raise ValueError("%s: field `%s` must be in [0, 1), got %r" %
                       (where, key, value))
    if key == "initializer_range" and value < 0:
      raise ValueError("%s: field `initializer_range` must be >= 0, got %r" %
                       (where, value))
  if "hidden_act" in d:
    act = d["hidden_act"]
    if not isinstance(act, str) or act.lower() not in _ACTIVATIONS:
      raise ValueError("%s: field `hidden_act` must be one of %s, got %r" %
                       (where, ", ".join(_ACTIVATIONS), act))
  hidden = d.get("hidden_size", 4096)
  heads = d.get("num_attention_heads", 64)
  if hidden % heads != 0:
    raise ValueError("%s: field `hidden_size` (%d) must be a multiple of "
                     "`num_attention_heads` (%d)" % (where, hidden, heads))


def check_seq_length(max_seq_length, albert_config, config_file=None,
                     error_cls=ValueError):
  """Raises `error_cls` when `max_seq_length` exceeds the config's
  max_position_embeddings (no position embedding exists beyond it)."""
  if max_seq_length > albert_config.max_position_embeddings:
    raise error_cls(
        "--max_seq_length=%d exceeds max_position_embeddings=%d of %s: the "
        "model has no position embeddings beyond that; lower --max_seq_length"
        % (max_seq_length, albert_config.max_position_embeddings,
           config_file or "the ALBERT config"))


class AlbertModel(object):
  """ALBERT encoder: factorized embeddings + a parameter-shared Transformer.

  Example usage:

  ```python
  input_ids = tf.constant([[31, 51, 99], [15, 5, 0]])
  input_mask = tf.constant([[1, 1, 1], [1, 1, 0]])
  token_type_ids = tf.constant([[0, 0, 1], [0, 1, 0]])

  config = modeling.AlbertConfig(vocab_size=32000, hidden_size=512,
    num_hidden_layers=8, num_attention_heads=8, intermediate_size=1024)

  model = modeling.AlbertModel(config=config, is_training=True,
    input_ids=input_ids, input_mask=input_mask, token_type_ids=token_type_ids)

  pooled_output = model.get_pooled_output()
  ```
  """

  def __init__(self,
               config,
               is_training,
               input_ids,
               input_mask=None,
               token_type_ids=None,
               use_one_hot_embeddings=False,
               use_einsum=True,
               scope=None,
               compute_dtype=tf.float32):
    """Constructor for AlbertModel.

    Args:
      config: `AlbertConfig` instance.
      is_training: bool. true for training model, false for eval model. Controls
        whether dropout will be applied.
      input_ids: int32 Tensor of shape [batch_size, seq_length].
      input_mask: (optional) int32 Tensor of shape [batch_size, seq_length].
      token_type_ids: (optional) int32 Tensor of shape [batch_size, seq_length].
      use_one_hot_embeddings: (optional) bool. Whether to use one-hot word
        embeddings or tf.nn.embedding_lookup() for the word embeddings.
      use_einsum: (optional) bool. Whether to use einsum or reshape+matmul for
        dense layers.
      scope: (optional) variable scope. Defaults to "bert".
      compute_dtype: (optional) tf.float32, or tf.bfloat16 / tf.float16 for
        mixed precision through casts: variables stay float32 and are read
        as `compute_dtype` inside the encoder (`cast_getter`); embeddings,
        layer norms and the attention softmax compute in float32, and the
        sequence and pooled outputs are float32 again.

    Raises:
      ValueError: The config is invalid or one of the input tensor shapes
        is invalid.
    """
    config = copy.deepcopy(config)
    if not is_training:
      config.hidden_dropout_prob = 0.0
      config.attention_probs_dropout_prob = 0.0

    input_shape = get_shape_list(input_ids, expected_rank=2)
    batch_size = input_shape[0]
    seq_length = input_shape[1]

    if input_mask is None:
      input_mask = tf.ones(shape=[batch_size, seq_length], dtype=tf.int32)

    if token_type_ids is None:
      token_type_ids = tf.zeros(shape=[batch_size, seq_length], dtype=tf.int32)

    with tf.variable_scope(scope, default_name="bert"):
      with tf.variable_scope("embeddings"):
        (self.word_embedding_output,
         self.output_embedding_table) = embedding_lookup(
             input_ids=input_ids,
             vocab_size=config.vocab_size,
             embedding_size=config.embedding_size,
             initializer_range=config.initializer_range,
             word_embedding_name="word_embeddings",
             use_one_hot_embeddings=use_one_hot_embeddings)

        # Position and token type embeddings are added before LayerNorm and
        # dropout, all at embedding_size (before the factorized projection).
        self.embedding_output = embedding_postprocessor(
            input_tensor=self.word_embedding_output,
            use_token_type=True,
            token_type_ids=token_type_ids,
            token_type_vocab_size=config.type_vocab_size,
            token_type_embedding_name="token_type_embeddings",
            use_position_embeddings=True,
            position_embedding_name="position_embeddings",
            initializer_range=config.initializer_range,
            max_position_embeddings=config.max_position_embeddings,
            dropout_prob=config.hidden_dropout_prob)

      low = compute_dtype != tf.float32
      with tf.variable_scope(
          "encoder", custom_getter=cast_getter(compute_dtype) if low else None):
        # `all_encoder_layers`: one [batch_size, seq_length, hidden_size]
        # tensor per layer and inner group (in compute_dtype).
        self.all_encoder_layers = transformer_model(
            input_tensor=tf.cast(self.embedding_output, compute_dtype),
            attention_mask=input_mask,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_hidden_groups=config.num_hidden_groups,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            inner_group_num=config.inner_group_num,
            intermediate_act_fn=get_activation(config.hidden_act),
            hidden_dropout_prob=config.hidden_dropout_prob,
            attention_probs_dropout_prob=config.attention_probs_dropout_prob,
            initializer_range=config.initializer_range,
            do_return_all_layers=True,
            use_einsum=use_einsum)

      self.sequence_output = tf.cast(self.all_encoder_layers[-1], tf.float32)
      # The pooler keeps the hidden state of the first ([CLS]) token and
      # passes it through a tanh dense layer, for segment-level tasks.
      with tf.variable_scope("pooler"):
        first_token_tensor = tf.squeeze(self.sequence_output[:, 0:1, :], axis=1)
        self.pooled_output = _dense(
            first_token_tensor,
            config.hidden_size,
            activation=tf.tanh,
            kernel_initializer=create_initializer(config.initializer_range),
            name="dense")

  def get_pooled_output(self):
    return self.pooled_output

  def get_sequence_output(self):
    """Gets final hidden layer of encoder.

    Returns:
      float Tensor of shape [batch_size, seq_length, hidden_size] corresponding
      to the final hidden of the transformer encoder.
    """
    return self.sequence_output

  def get_all_encoder_layers(self):
    return self.all_encoder_layers

  def get_word_embedding_output(self):
    """Output of the word(piece) embedding lookup.

    This is BEFORE positional embeddings and token type embeddings have been
    added.

    Returns:
      float Tensor of shape [batch_size, seq_length, embedding_size].
    """
    return self.word_embedding_output

  def get_embedding_output(self):
    """Output of the embedding layer (i.e., input to the transformer).

    Returns:
      float Tensor of shape [batch_size, seq_length, embedding_size]: word +
      position + token type embeddings after layer normalization.
    """
    return self.embedding_output

  def get_embedding_table(self):
    return self.output_embedding_table


def _dense(input_tensor, units, activation, kernel_initializer, name):
  """Keras-free stand-in for tf.layers.dense on a rank-2 input.

  Creates `<name>/kernel` [in, units] and `<name>/bias` [units], the variables
  tf.layers.dense creates in upstream's pooler.
  """
  width = get_shape_list(input_tensor, expected_rank=2)[1]
  with tf.variable_scope(name):
    kernel = tf.get_variable(
        name="kernel", shape=[width, units], initializer=kernel_initializer)
    bias = tf.get_variable(
        name="bias", shape=[units], initializer=tf.zeros_initializer())
    output = tf.nn.bias_add(tf.matmul(input_tensor, kernel), bias)
  if activation is not None:
    output = activation(output)
  return output


def gelu(x):
  """Gaussian Error Linear Unit (tanh approximation, as upstream).

  Original paper: https://arxiv.org/abs/1606.08415

  Args:
    x: float Tensor to perform activation.

  Returns:
    `x` with the GELU activation applied.
  """
  cdf = 0.5 * (1.0 + tf.tanh(
      (np.sqrt(2 / np.pi) * (x + 0.044715 * tf.pow(x, 3)))))
  return x * cdf


def get_activation(activation_string):
  """Maps a string to a Python function, e.g., "relu" => `tf.nn.relu`.

  Args:
    activation_string: String name of the activation function.

  Returns:
    A Python function corresponding to the activation function. If
    `activation_string` is None, empty, or "linear", this will return None.
    If `activation_string` is not a string, it will return `activation_string`.

  Raises:
    ValueError: The `activation_string` does not correspond to a known
      activation.
  """
  # Anything that is not a string is assumed to be an activation function.
  if not isinstance(activation_string, str):
    return activation_string

  if not activation_string:
    return None

  act = activation_string.lower()
  if act == "linear":
    return None
  elif act == "relu":
    return tf.nn.relu
  elif act == "gelu":
    return gelu
  elif act == "tanh":
    return tf.tanh
  else:
    raise ValueError("Unsupported activation: %s" % act)


def get_assignment_map_from_checkpoint(tvars, init_checkpoint, num_of_group=0):
  """Matches the variables `tvars` with those stored in `init_checkpoint`.

  With `num_of_group` > 1, a model variable under `group_<g>`, `ffn_<k>` or
  `attention_<k>` that is absent from the checkpoint is matched to its
  `group_0` / `ffn_1` / `attention_1` counterpart, so a checkpoint trained with
  full sharing can initialise a model with several groups.

  Args:
    tvars: list of variables to initialise.
    init_checkpoint: checkpoint path (prefix) or directory.
    num_of_group: 0 for one assignment map; otherwise the number of maps to
      return, map `g` holding the variables of group `g` (map 0 also holds
      everything outside the groups).

  Returns:
    (assignment_map, initialized_variable_names): `assignment_map` is an
    OrderedDict {checkpoint name: variable name} when `num_of_group` == 0, and
    a list of `num_of_group` such OrderedDicts otherwise;
    `initialized_variable_names` holds each matched variable name, with and
    without its ":0" suffix.

  Raises:
    ValueError: the checkpoint cannot be read, or a matched variable has a
      different shape in the checkpoint and in the model.
  """
  initialized_variable_names = {}

  name_to_variable = collections.OrderedDict()
  for var in tvars:
    name = var.name
    m = re.match("^(.*):\\d+$", name)
    if m is not None:
      name = m.group(1)
    name_to_variable[name] = var
  try:
    init_vars = tf.train.list_variables(init_checkpoint)
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError("Cannot read checkpoint %s: %s" %
                     (init_checkpoint, e)) from e
  init_shapes = {name: list(shape) for (name, shape) in init_vars}

  if num_of_group > 0:
    assignment_map = []
    for _ in range(num_of_group):
      assignment_map.append(collections.OrderedDict())
  else:
    assignment_map = collections.OrderedDict()

  for name in name_to_variable:
    if name in init_shapes:
      tvar_name = name
    elif (re.sub(r"/group_\d+/", "/group_0/", name) in init_shapes and
          num_of_group > 1):
      tvar_name = re.sub(r"/group_\d+/", "/group_0/", name)
    elif (re.sub(r"/ffn_\d+/", "/ffn_1/", name) in init_shapes and
          num_of_group > 1):
      tvar_name = re.sub(r"/ffn_\d+/", "/ffn_1/", name)
    elif (re.sub(r"/attention_\d+/", "/attention_1/", name) in init_shapes and
          num_of_group > 1):
      tvar_name = re.sub(r"/attention_\d+/", "/attention_1/", name)
    else:
      tf.logging.info("name %s does not get matched", name)
      continue

    # A shape mismatch would otherwise only surface as an opaque error when
    # the init op runs; name both shapes here.
    var_shape = name_to_variable[name].shape
    if (var_shape.is_fully_defined() and
        var_shape.as_list() != init_shapes[tvar_name]):
      raise ValueError(
          "Checkpoint %s: variable %s has shape %s in the checkpoint but the "
          "model variable %s has shape %s (does the model config match the "
          "checkpoint?)" % (init_checkpoint, tvar_name, init_shapes[tvar_name],
                            name, var_shape.as_list()))

    tf.logging.info("name %s match to %s", name, tvar_name)
    if num_of_group > 0:
      target = 0
      for gid in range(1, num_of_group):
        if (("/group_" + str(gid) + "/" in name) or
            ("/ffn_" + str(gid) + "/" in name) or
            ("/attention_" + str(gid) + "/" in name)):
          target = gid
      # Upstream files every `attention_1`/`ffn_1` variable under group 1, so
      # with 2+ groups group_1's variable overwrote group_0's entry for the
      # same checkpoint name and group_0 was silently left uninitialised.
      # Each map can hold a checkpoint name once: use the next free map.
      for step in range(num_of_group):
        gid = (target + step) % num_of_group
        if tvar_name not in assignment_map[gid]:
          break
      else:
        raise ValueError(
            "Checkpoint %s: variable %s would initialise more than %d model "
            "variables; raise num_of_group" %
            (init_checkpoint, tvar_name, num_of_group))
      tf.logging.info("%s belongs to %dth", name, gid)
      assignment_map[gid][tvar_name] = name
    else:
      assignment_map[tvar_name] = name
    initialized_variable_names[name] = 1
    initialized_variable_names[name + ":0"] = 1

  return (assignment_map, initialized_variable_names)


def cast_getter(compute_dtype):
  """A variable_scope custom getter: float32 variables are created as
  float32 and read as `compute_dtype` (mixed precision through casts)."""

  def getter(getter, *args, **kwargs):  # pylint: disable=redefined-outer-name
    variable = getter(*args, **kwargs)
    if variable.dtype.base_dtype == tf.float32:
      return tf.cast(variable, compute_dtype)
    return variable

  return getter


def dropout(input_tensor, dropout_prob):
  """Performs dropout.

  Args:
    input_tensor: float Tensor.
    dropout_prob: Python float. The probability of dropping out a value (NOT of
      *keeping* a dimension as in the TF 1 `tf.nn.dropout(keep_prob=...)`).

  Returns:
    A version of `input_tensor` with dropout applied.
  """
  if dropout_prob is None or dropout_prob == 0.0:
    return input_tensor

  output = tf.nn.dropout(input_tensor, rate=dropout_prob)
  return output


def layer_norm(input_tensor, name=None):
  """Runs layer normalization on the last dimension of the tensor.

  Reproduces tf.contrib.layers.layer_norm(begin_norm_axis=-1,
  begin_params_axis=-1): variables `LayerNorm/beta` (zeros) and
  `LayerNorm/gamma` (ones) under a uniquified `LayerNorm`, `LayerNorm_1`, ...
  scope, moments over the last axis and a variance epsilon of 1e-12 (1e-3 for
  float16). A bfloat16/float16 input is normalised in float32 (float32
  variables) and cast back.
  """
  if input_tensor.dtype.base_dtype in (tf.bfloat16, tf.float16):
    low = input_tensor.dtype.base_dtype
    return tf.cast(layer_norm(tf.cast(input_tensor, tf.float32), name), low)
  inputs_shape = input_tensor.shape
  inputs_rank = inputs_shape.ndims
  if inputs_rank is None:
    raise ValueError("Inputs %s have undefined rank." % input_tensor.name)
  dtype = input_tensor.dtype.base_dtype
  params_shape = inputs_shape[-1:]
  if not params_shape.is_fully_defined():
    raise ValueError("Inputs %s: last dimension must be defined, shape is %s"
                     % (input_tensor.name, inputs_shape))
  collections_ = [tf.GraphKeys.GLOBAL_VARIABLES, tf.GraphKeys.MODEL_VARIABLES]
  with tf.variable_scope(name, default_name="LayerNorm",
                         values=[input_tensor]):
    beta = tf.get_variable(
        "beta", shape=params_shape, dtype=dtype,
        initializer=tf.zeros_initializer(), collections=collections_,
        trainable=True)
    gamma = tf.get_variable(
        "gamma", shape=params_shape, dtype=dtype,
        initializer=tf.ones_initializer(), collections=collections_,
        trainable=True)
    # Under `cast_getter` the parameters arrive as casts; use float32.
    beta, gamma = tf.cast(beta, dtype), tf.cast(gamma, dtype)
    mean, variance = tf.nn.moments(
        input_tensor, [inputs_rank - 1], keepdims=True)
    variance_epsilon = 1e-12 if dtype != tf.float16 else 1e-3
    outputs = tf.nn.batch_normalization(
        input_tensor, mean, variance, offset=beta, scale=gamma,
        variance_epsilon=variance_epsilon)
    outputs.set_shape(inputs_shape)
  return outputs


def layer_norm_and_dropout(input_tensor, dropout_prob, name=None):
  """Runs layer normalization followed by dropout."""
  output_tensor = layer_norm(input_tensor, name)
  output_tensor = dropout(output_tensor, dropout_prob)
  return output_tensor


def create_initializer(initializer_range=0.02):
  """Creates a `truncated_normal_initializer` with the given range."""
  return tf.truncated_normal_initializer(stddev=initializer_range)


def get_timing_signal_1d_given_position(channels,
                                        position,
                                        min_timescale=1.0,
                                        max_timescale=1.0e4):
  """Sinusoid timing signals of different frequencies at given positions.

  As add_timing_signal_1d_given_position in tensor2tensor's
  common_attention.py.

  Args:
    channels: scalar, size of timing embeddings to create. The number of
        different timescales is equal to channels / 2.
    position: a Tensor with shape [batch, seq_len]
    min_timescale: a float
    max_timescale: a float

  Returns:
    a Tensor of timing signals [batch, seq_len, channels]
  """
  num_timescales = channels // 2
  log_timescale_increment = (
      math.log(float(max_timescale) / float(min_timescale)) /
      (tf.cast(num_timescales, tf.float32) - 1))
  inv_timescales = min_timescale * tf.exp(
      tf.cast(tf.range(num_timescales), tf.float32) * -log_timescale_increment)
  scaled_time = (
      tf.expand_dims(tf.cast(position, tf.float32), 2) * tf.expand_dims(
          tf.expand_dims(inv_timescales, 0), 0))
  signal = tf.concat([tf.sin(scaled_time), tf.cos(scaled_time)], axis=2)
  signal = tf.pad(signal, [[0, 0], [0, 0], [0, tf.math.floormod(channels, 2)]])
  return signal


def embedding_lookup(input_ids,
                     vocab_size,
                     embedding_size=128,
                     initializer_range=0.02,
                     word_embedding_name="word_embeddings",
                     use_one_hot_embeddings=False):
  """Looks up words embeddings for id tensor.

  Args:
    input_ids: int32 Tensor of shape [batch_size, seq_length] containing word
      ids.
    vocab_size: int. Size of the embedding vocabulary.
    embedding_size: int. Width of the word embeddings.
    initializer_range: float. Embedding initialization range.
    word_embedding_name: string. Name of the embedding table.
    use_one_hot_embeddings: bool. If True, use one-hot method for word
      embeddings. If False, use `tf.nn.embedding_lookup()`.

  Returns:
    (float Tensor of shape [batch_size, seq_length, embedding_size],
     the embedding table [vocab_size, embedding_size]).
  """
  # Works on [batch_size, seq_length, num_inputs]; a rank-2 input gets a
  # trailing dimension of 1.
  if input_ids.shape.ndims == 2:
    input_ids = tf.expand_dims(input_ids, axis=[-1])

  embedding_table = tf.get_variable(
      name=word_embedding_name,
      shape=[vocab_size, embedding_size],
      initializer=create_initializer(initializer_range))

  if use_one_hot_embeddings:
    flat_input_ids = tf.reshape(input_ids, [-1])
    one_hot_input_ids = tf.one_hot(flat_input_ids, depth=vocab_size)
    output = tf.matmul(one_hot_input_ids, embedding_table)
  else:
    output = tf.nn.embedding_lookup(embedding_table, input_ids)

  input_shape = get_shape_list(input_ids)

  output = tf.reshape(output,
                      input_shape[0:-1] + [input_shape[-1] * embedding_size])
  return (output, embedding_table)


def embedding_postprocessor(input_tensor,
                            use_token_type=False,
                            token_type_ids=None,
                            token_type_vocab_size=16,
                            token_type_embedding_name="token_type_embeddings",
                            use_position_embeddings=True,
                            position_embedding_name="position_embeddings",
                            initializer_range=0.02,
                            max_position_embeddings=512,
                            dropout_prob=0.1,
                            use_one_hot_embeddings=True):
  """Adds token type and position embeddings, then LayerNorm and dropout.

  Args:
    input_tensor: float Tensor of shape [batch_size, seq_length,
      embedding_size].
    use_token_type: bool. Whether to add embeddings for `token_type_ids`.
    token_type_ids: (optional) int32 Tensor of shape [batch_size, seq_length].
      Must be specified if `use_token_type` is True.
    token_type_vocab_size: int. The vocabulary size of `token_type_ids`.
    token_type_embedding_name: string. The name of the embedding table variable
      for token type ids.
    use_position_embeddings: bool. Whether to add position embeddings for the
      position of each token in the sequence.
    position_embedding_name: string. The name of the embedding table variable
      for positional embeddings.
    initializer_range: float. Range of the weight initialization.
    max_position_embeddings: int. Maximum sequence length that might ever be
      used with this model. This can be longer than the sequence length of
      input_tensor, but cannot be shorter.
    dropout_prob: float. Dropout probability applied to the final output tensor.
    use_one_hot_embeddings: bool. If True, use one-hot method for the token
      type embeddings. If False, use `tf.nn.embedding_lookup()`.

  Returns:
    float tensor with same shape as `input_tensor`.

  Raises:
    ValueError: One of the tensor shapes or input values is invalid.
  """
  input_shape = get_shape_list(input_tensor, expected_rank=3)
  batch_size = input_shape[0]
  seq_length = input_shape[1]
  width = input_shape[2]

  output = input_tensor

  if use_token_type:
    if token_type_ids is None:
      raise ValueError("`token_type_ids` must be specified if "
                       "`use_token_type` is True.")
    token_type_table = tf.get_variable(
        name=token_type_embedding_name,
        shape=[token_type_vocab_size, width],
        initializer=create_initializer(initializer_range))
    # The token type vocabulary is tiny, so a one-hot matmul is the fast path.
    if use_one_hot_embeddings:
      flat_token_type_ids = tf.reshape(token_type_ids, [-1])
      one_hot_ids = tf.one_hot(flat_token_type_ids, depth=token_type_vocab_size)
      token_type_embeddings = tf.matmul(one_hot_ids, token_type_table)
      token_type_embeddings = tf.reshape(token_type_embeddings,
                                         [batch_size, seq_length, width])
    else:
      token_type_embeddings = tf.nn.embedding_lookup(token_type_table,
                                                     token_type_ids)
    output += token_type_embeddings

  if use_position_embeddings:
    if isinstance(seq_length, int) and seq_length > max_position_embeddings:
      raise ValueError(
          "Sequence length %d is longer than max_position_embeddings %d" %
          (seq_length, max_position_embeddings))
    assert_op = tf.assert_less_equal(seq_length, max_position_embeddings)
    with tf.control_dependencies([assert_op]):
      full_position_embeddings = tf.get_variable(
          name=position_embedding_name,
          shape=[max_position_embeddings, width],
          initializer=create_initializer(initializer_range))
      # The table covers max_position_embeddings positions; the sequence uses
      # the first seq_length of them.
      position_embeddings = tf.slice(full_position_embeddings, [0, 0],
                                     [seq_length, -1])
      num_dims = len(output.shape.as_list())

      # Broadcast over the leading (batch) dimensions.
      position_broadcast_shape = []
      for _ in range(num_dims - 2):
        position_broadcast_shape.append(1)
      position_broadcast_shape.extend([seq_length, width])
      position_embeddings = tf.reshape(position_embeddings,
                                       position_broadcast_shape)
      output += position_embeddings

  output = layer_norm_and_dropout(output, dropout_prob)
  return output


def einsum_via_matmul(input_tensor, w, num_inner_dims):
  """Implements einsum via matmul and reshape ops.

  Args:
    input_tensor: float Tensor of shape [<batch_dims>, <inner_dims>].
    w: float Tensor of shape [<inner_dims>, <outer_dims>].
    num_inner_dims: int. number of dimensions to use for inner products.

  Returns:
    float Tensor of shape [<batch_dims>, <outer_dims>].
  """
  input_shape = get_shape_list(input_tensor)
  w_shape = get_shape_list(w)
  batch_dims = input_shape[: -num_inner_dims]
  inner_dims = input_shape[-num_inner_dims:]
  outer_dims = w_shape[num_inner_dims:]
  inner_dim = int(np.prod(inner_dims))
  outer_dim = int(np.prod(outer_dims))
  if num_inner_dims > 1:
    input_tensor = tf.reshape(input_tensor, batch_dims + [inner_dim])
  if len(w_shape) > 2:
    w = tf.reshape(w, [inner_dim, outer_dim])
  ret = tf.matmul(input_tensor, w)
  if len(outer_dims) > 1:
    ret = tf.reshape(ret, batch_dims + outer_dims)
  return ret


def dense_layer_3d(input_tensor,
                   num_attention_heads,
                   head_size,
                   initializer,
                   activation,
                   use_einsum,
                   name=None):
  """A dense layer with 3D kernel.

  The stored kernel is 2D [hidden_size, num_attention_heads * head_size] (as
  in upstream checkpoints) and is reshaped to 3D for the computation.

  Args:
    input_tensor: float Tensor of shape [batch, seq_length, hidden_size].
    num_attention_heads: Number of attention heads.
    head_size: The size per attention head.
    initializer: Kernel initializer.
    activation: Activation function.
    use_einsum: bool. Whether to use einsum or reshape+matmul for dense layers.
    name: The name scope of this layer.

  Returns:
    float Tensor of shape [batch, seq_length, num_attention_heads, head_size].
  """

  input_shape = get_shape_list(input_tensor)
  hidden_size = input_shape[2]

  with tf.variable_scope(name):
    w = tf.get_variable(
        name="kernel",
        shape=[hidden_size, num_attention_heads * head_size],
        initializer=initializer)
    w = tf.reshape(w, [hidden_size, num_attention_heads, head_size])
    b = tf.get_variable(
        name="bias",
        shape=[num_attention_heads * head_size],
        initializer=tf.zeros_initializer)
    b = tf.reshape(b, [num_attention_heads, head_size])
    if use_einsum:
      ret = tf.einsum("BFH,HND->BFND", input_tensor, w)
    else:
      ret = einsum_via_matmul(input_tensor, w, 1)
    ret += b
  if activation is not None:
    return activation(ret)
  else:
    return ret


def dense_layer_3d_proj(input_tensor,
                        hidden_size,
                        head_size,
                        initializer,
                        activation,
                        use_einsum,
                        name=None):
  """A dense layer with 3D kernel for projection.

  Args:
    input_tensor: float Tensor of shape [batch,from_seq_length,
      num_attention_heads, size_per_head].
    hidden_size: The size of hidden layer.
    head_size: The size of head.
    initializer: Kernel initializer.
    activation: Activation function.
    use_einsum: bool. Whether to use einsum or reshape+matmul for dense layers.
    name: The name scope of this layer.

  Returns:
    float Tensor of shape [batch, from_seq_length, hidden_size].
  """
  input_shape = get_shape_list(input_tensor)
  num_attention_heads = input_shape[2]
  with tf.variable_scope(name):
    w = tf.get_variable(
        name="kernel",
        shape=[num_attention_heads * head_size, hidden_size],
        initializer=initializer)
    w = tf.reshape(w, [num_attention_heads, head_size, hidden_size])
    b = tf.get_variable(
        name="bias", shape=[hidden_size], initializer=tf.zeros_initializer)
    if use_einsum:
      ret = tf.einsum("BFND,NDH->BFH", input_tensor, w)
    else:
      ret = einsum_via_matmul(input_tensor, w, 2)
    ret += b
  if activation is not None:
    return activation(ret)
  else:
    return ret


def dense_layer_2d(input_tensor,
                   output_size,
                   initializer,
                   activation,
                   use_einsum,
                   num_attention_heads=1,
                   name=None):
  """A dense layer with 2D kernel.

  Args:
    input_tensor: Float tensor with rank 3.
    output_size: The size of output dimension.
    initializer: Kernel initializer.
    activation: Activation function.
    use_einsum: bool. Whether to use einsum or reshape+matmul for dense layers.
    num_attention_heads: number of attention head in attention layer (unused).
    name: The name scope of this layer.

  Returns:
    float Tensor of shape [batch, seq_length, output_size].
  """
  del num_attention_heads  # unused
  input_shape = get_shape_list(input_tensor)
  hidden_size = input_shape[2]
  with tf.variable_scope(name):
    w = tf.get_variable(
        name="kernel",
        shape=[hidden_size, output_size],
        initializer=initializer)
    b = tf.get_variable(
        name="bias", shape=[output_size], initializer=tf.zeros_initializer)
    if use_einsum:
      ret = tf.einsum("BFH,HO->BFO", input_tensor, w)
    else:
      ret = tf.matmul(input_tensor, w)
    ret += b
  if activation is not None:
    return activation(ret)
  else:
    return ret


def dot_product_attention(q, k, v, bias, dropout_rate=0.0):
  """Dot-product attention.

  Args:
    q: Tensor with shape [..., length_q, depth_k].
    k: Tensor with shape [..., length_kv, depth_k]. Leading dimensions must
      match with q.
    v: Tensor with shape [..., length_kv, depth_v] Leading dimensions must
      match with q.
    bias: (optional) attention mask of shape [batch, 1, length_kv, 1] (1 for
      positions to attend to, 0 for padding), as built by `attention_layer`.
    dropout_rate: a float.

  Returns:
    Tensor with shape [..., length_q, depth_v].
  """
  logits = tf.matmul(q, k, transpose_b=True)  # [..., length_q, length_kv]
  logits = tf.multiply(logits, 1.0 / math.sqrt(float(get_shape_list(q)[-1])))
  if bias is not None:
    from_shape = get_shape_list(q)
    if len(from_shape) == 4:
      broadcast_ones = tf.ones([from_shape[0], 1, from_shape[2], 1], tf.float32)
    elif len(from_shape) == 5:
      # from_shape = [B, N, Block_num, block_size, depth]
      broadcast_ones = tf.ones([from_shape[0], 1, from_shape[2], from_shape[3],
                                1], tf.float32)
    else:
      raise ValueError("dot_product_attention with a mask needs rank 4 or 5 "
                       "queries, got shape %s" % (q.shape,))

    # [B, 1, F, 1] x [B, 1, 1, T] -> [B, 1, F, T] mask, broadcast over heads.
    bias = tf.matmul(broadcast_ones,
                     tf.cast(bias, tf.float32), transpose_b=True)

    # 0.0 where attending, -10000.0 at masked positions: added to the raw
    # scores this removes them from the softmax.
    # Scores, mask and softmax are float32 also under mixed precision.
    adder = (1.0 - bias) * -10000.0
    logits = tf.cast(logits, tf.float32) + adder

  attention_probs = tf.nn.softmax(tf.cast(logits, tf.float32),
                                  name="attention_probs")
  attention_probs = tf.cast(attention_probs, v.dtype)
  attention_probs = dropout(attention_probs, dropout_rate)
  return tf.matmul(attention_probs, v)


def attention_layer(from_tensor,
                    to_tensor,
                    attention_mask=None,
                    num_attention_heads=1,
                    query_act=None,
                    key_act=None,
                    value_act=None,
                    attention_probs_dropout_prob=0.0,
                    initializer_range=0.02,
                    batch_size=None,
                    from_seq_length=None,
                    to_seq_length=None,
                    use_einsum=True):
  """Performs multi-headed attention from `from_tensor` to `to_tensor`.

  Args:
    from_tensor: float Tensor of shape [batch_size, from_seq_length,
      from_width].
    to_tensor: float Tensor of shape [batch_size, to_seq_length, to_width].
    attention_mask: (optional) int32 Tensor of shape [batch_size,
      to_seq_length] (ALBERT passes the input mask as is): 1 for positions that
      may be attended to, 0 for padding.
    num_attention_heads: int. Number of attention heads.
    query_act: (optional) Activation function for the query transform.
    key_act: (optional) Activation function for the key transform.
    value_act: (optional) Activation function for the value transform.
    attention_probs_dropout_prob: (optional) float. Dropout probability of the
      attention probabilities.
    initializer_range: float. Range of the weight initializer.
    batch_size: (Optional) int. If the input is 2D, this might be the batch size
      of the 3D version of the `from_tensor` and `to_tensor`.
    from_seq_length: (Optional) If the input is 2D, this might be the seq length
      of the 3D version of the `from_tensor`.
    to_seq_length: (Optional) If the input is 2D, this might be the seq length
      of the 3D version of the `to_tensor`.
    use_einsum: bool. Whether to use einsum or reshape+matmul for dense layers

  Returns:
    float Tensor of shape [batch_size, from_seq_length, num_attention_heads,
      size_per_head].

  Raises:
    ValueError: Any of the arguments or tensor shapes are invalid.
  """
  from_shape = get_shape_list(from_tensor, expected_rank=[2, 3])
  to_shape = get_shape_list(to_tensor, expected_rank=[2, 3])
  size_per_head = int(from_shape[-1] / num_attention_heads)

  if len(from_shape) != len(to_shape):
    raise ValueError(
        "The rank of `from_tensor` must match the rank of `to_tensor`.")

  if len(from_shape) == 3:
    batch_size = from_shape[0]
    from_seq_length = from_shape[1]
    to_seq_length = to_shape[1]
  elif len(from_shape) == 2:
    if (batch_size is None or from_seq_length is None or to_seq_length is None):
      raise ValueError(
          "When passing in rank 2 tensors to attention_layer, the values "
          "for `batch_size`, `from_seq_length`, and `to_seq_length` "
          "must all be specified.")

  # Dimensions: B = batch, F = from length, T = to length, N = heads,
  # H = size per head.
  # `q` = [B, F, N, H]
  q = dense_layer_3d(from_tensor, num_attention_heads, size_per_head,
                     create_initializer(initializer_range), query_act,
                     use_einsum, "query")

  # `k` = [B, T, N, H]
  k = dense_layer_3d(to_tensor, num_attention_heads, size_per_head,
                     create_initializer(initializer_range), key_act,
                     use_einsum, "key")
  # `v` = [B, T, N, H]
  v = dense_layer_3d(to_tensor, num_attention_heads, size_per_head,
                     create_initializer(initializer_range), value_act,
                     use_einsum, "value")
  q = tf.transpose(q, [0, 2, 1, 3])
  k = tf.transpose(k, [0, 2, 1, 3])
  v = tf.transpose(v, [0, 2, 1, 3])
  if attention_mask is not None:
    attention_mask = tf.reshape(
        attention_mask, [batch_size, 1, to_seq_length, 1])
  # `new_embeddings` = [B, N, F, H]
  new_embeddings = dot_product_attention(q, k, v, attention_mask,
                                         attention_probs_dropout_prob)

  return tf.transpose(new_embeddings, [0, 2, 1, 3])


def attention_ffn_block(layer_input,
                        hidden_size=768,
                        attention_mask=None,
                        num_attention_heads=1,
                        attention_head_size=64,
                        attention_probs_dropout_prob=0.0,
                        intermediate_size=3072,
                        intermediate_act_fn=None,
                        initializer_range=0.02,
                        hidden_dropout_prob=0.0,
                        use_einsum=True):
  """One attention + feed-forward sub-block (post-LayerNorm residuals).

  Args:
    layer_input: float Tensor of shape [batch_size, from_seq_length,
      from_width].
    hidden_size: (optional) int, size of hidden layer.
    attention_mask: (optional) int32 Tensor of shape [batch_size, seq_length]:
      1 for positions that may be attended to, 0 for padding.
    num_attention_heads: int. Number of attention heads.
    attention_head_size: int. Size of attention head.
    attention_probs_dropout_prob: float. dropout probability for attention_layer
    intermediate_size: int. Size of intermediate hidden layer.
    intermediate_act_fn: (optional) Activation function for the intermediate
      layer.
    initializer_range: float. Range of the weight initializer.
    hidden_dropout_prob: (optional) float. Dropout probability of the hidden
      layer.
    use_einsum: bool. Whether to use einsum or reshape+matmul for dense layers

  Returns:
    layer output
  """

  with tf.variable_scope("attention_1"):
    with tf.variable_scope("self"):
      attention_output = attention_layer(
          from_tensor=layer_input,
          to_tensor=layer_input,
          attention_mask=attention_mask,
          num_attention_heads=num_attention_heads,
          attention_probs_dropout_prob=attention_probs_dropout_prob,
          initializer_range=initializer_range,
          use_einsum=use_einsum)

    # Project back to `hidden_size`, then add the residual `layer_input`.
    with tf.variable_scope("output"):
      attention_output = dense_layer_3d_proj(
          attention_output,
          hidden_size,
          attention_head_size,
          create_initializer(initializer_range),
          None,
          use_einsum=use_einsum,
          name="dense")
      attention_output = dropout(attention_output, hidden_dropout_prob)
  attention_output = layer_norm(attention_output + layer_input)
  with tf.variable_scope("ffn_1"):
    with tf.variable_scope("intermediate"):
      intermediate_output = dense_layer_2d(
          attention_output,
          intermediate_size,
          create_initializer(initializer_range),
          intermediate_act_fn,
          use_einsum=use_einsum,
          num_attention_heads=num_attention_heads,
          name="dense")
      with tf.variable_scope("output"):
        ffn_output = dense_layer_2d(
            intermediate_output,
            hidden_size,
            create_initializer(initializer_range),
            None,
            use_einsum=use_einsum,
            num_attention_heads=num_attention_heads,
            name="dense")
      ffn_output = dropout(ffn_output, hidden_dropout_prob)
  ffn_output = layer_norm(ffn_output + attention_output)
  return ffn_output


def transformer_model(input_tensor,
                      attention_mask=None,
                      hidden_size=768,
                      num_hidden_layers=12,
                      num_hidden_groups=12,
                      num_attention_heads=12,
                      intermediate_size=3072,
                      inner_group_num=1,
                      intermediate_act_fn="gelu",
                      hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1,
                      initializer_range=0.02,
                      do_return_all_layers=False,
                      use_einsum=True):
  """Multi-headed, multi-layer Transformer encoder with cross-layer sharing.

  Layer `l` uses the parameters of group int(l / num_hidden_layers *
  num_hidden_groups); each layer runs `inner_group_num` attention+ffn blocks
  with their own parameters. If the input width differs from `hidden_size`
  it is first projected by `embedding_hidden_mapping_in`.

  Args:
    input_tensor: float Tensor of shape [batch_size, seq_length, input_width].
    attention_mask: (optional) int32 Tensor of shape [batch_size, seq_length]
      with 1 for positions that can be attended to and 0 for padding.
    hidden_size: int. Hidden size of the Transformer.
    num_hidden_layers: int. Number of layers (blocks) in the Transformer.
    num_hidden_groups: int. Number of group for the hidden layers, parameters
      in the same group are shared.
    num_attention_heads: int. Number of attention heads in the Transformer.
    intermediate_size: int. The size of the "intermediate" (a.k.a., feed
      forward) layer.
    inner_group_num: int, number of inner repetition of attention and ffn.
    intermediate_act_fn: function. The non-linear activation function to apply
      to the output of the intermediate/feed-forward layer.
    hidden_dropout_prob: float. Dropout probability for the hidden layers.
    attention_probs_dropout_prob: float. Dropout probability of the attention
      probabilities.
    initializer_range: float. Range of the initializer (stddev of truncated
      normal).
    do_return_all_layers: Whether to also return all layers or just the final
      layer.
    use_einsum: bool. Whether to use einsum or reshape+matmul for dense layers

  Returns:
    float Tensor of shape [batch_size, seq_length, hidden_size], the final
    hidden layer of the Transformer (or a list of all of them).

  Raises:
    ValueError: A Tensor shape or parameter is invalid.
  """
  if hidden_size % num_attention_heads != 0:
    raise ValueError(
        "The hidden size (%d) is not a multiple of the number of attention "
        "heads (%d)" % (hidden_size, num_attention_heads))

  attention_head_size = hidden_size // num_attention_heads
  input_shape = get_shape_list(input_tensor, expected_rank=3)
  input_width = input_shape[2]

  all_layer_outputs = []
  if input_width != hidden_size:
    prev_output = dense_layer_2d(
        input_tensor, hidden_size, create_initializer(initializer_range),
        None, use_einsum=use_einsum, name="embedding_hidden_mapping_in")
  else:
    prev_output = input_tensor
  # AUTO_REUSE: re-entering group_<g> for a later layer reuses its variables
  # (re-entering also resets the LayerNorm/LayerNorm_1 name counter).
  with tf.variable_scope("transformer", reuse=tf.AUTO_REUSE):
    for layer_idx in range(num_hidden_layers):
      group_idx = int(layer_idx / num_hidden_layers * num_hidden_groups)
      with tf.variable_scope("group_%d" % group_idx):
        with tf.name_scope("layer_%d" % layer_idx):
          layer_output = prev_output
          for inner_group_idx in range(inner_group_num):
            with tf.variable_scope("inner_group_%d" % inner_group_idx):
              layer_output = attention_ffn_block(
                  layer_input=layer_output,
                  hidden_size=hidden_size,
                  attention_mask=attention_mask,
                  num_attention_heads=num_attention_heads,
                  attention_head_size=attention_head_size,
                  attention_probs_dropout_prob=attention_probs_dropout_prob,
                  intermediate_size=intermediate_size,
                  intermediate_act_fn=intermediate_act_fn,
                  initializer_range=initializer_range,
                  hidden_dropout_prob=hidden_dropout_prob,
                  use_einsum=use_einsum)
              prev_output = layer_output
              all_layer_outputs.append(layer_output)
  if do_return_all_layers:
    return all_layer_outputs
  else:
    return all_layer_outputs[-1]


def create_attention_mask_from_input_mask(from_tensor, to_mask):
  """Creates a 3D attention mask from a 2D tensor mask (BERT's helper).

  ALBERT's `attention_layer` takes the 2D [batch_size, to_seq_length] input
  mask directly; this [B, F, T] form is for code written against BERT.

  Args:
    from_tensor: 2D or 3D Tensor of shape [batch_size, from_seq_length, ...].
    to_mask: int32 Tensor of shape [batch_size, to_seq_length].

  Returns:
    float Tensor of shape [batch_size, from_seq_length, to_seq_length].
  """
  from_shape = get_shape_list(from_tensor, expected_rank=[2, 3])
  batch_size = from_shape[0]
  from_seq_length = from_shape[1]

  to_shape = get_shape_list(to_mask, expected_rank=2)
  to_seq_length = to_shape[1]

  to_mask = tf.cast(
      tf.reshape(to_mask, [batch_size, 1, to_seq_length]), tf.float32)

  # Every query position sees the same keys, so the mask is broadcast over F.
  broadcast_ones = tf.ones(
      shape=[batch_size, from_seq_length, 1], dtype=tf.float32)

  return broadcast_ones * to_mask


def get_shape_list(tensor, expected_rank=None, name=None):
  """Returns a list of the shape of tensor, preferring static dimensions.

  Args:
    tensor: A tf.Tensor object to find the shape of.
    expected_rank: (optional) int. The expected rank of `tensor`. If this is
      specified and the `tensor` has a different rank, and exception will be
      thrown.
    name: Optional name of the tensor for the error message.

  Returns:
    A list of dimensions of the shape of tensor. All static dimensions will
    be returned as python integers, and dynamic dimensions will be returned
    as tf.Tensor scalars.
  """
  if name is None:
    name = tensor.name

  if expected_rank is not None:
    assert_rank(tensor, expected_rank, name)

  shape = tensor.shape.as_list()

  non_static_indexes = []
  for (index, dim) in enumerate(shape):
    if dim is None:
      non_static_indexes.append(index)

  if not non_static_indexes:
    return shape

  dyn_shape = tf.shape(tensor)
  for index in non_static_indexes:
    shape[index] = dyn_shape[index]
  return shape


def reshape_to_matrix(input_tensor):
  """Reshapes a >= rank 2 tensor to a rank 2 tensor (i.e., a matrix)."""
  ndims = input_tensor.shape.ndims
  if ndims < 2:
    raise ValueError("Input tensor must have at least rank 2. Shape = %s" %
                     (input_tensor.shape))
  if ndims == 2:
    return input_tensor

  width = input_tensor.shape[-1]
  output_tensor = tf.reshape(input_tensor, [-1, width])
  return output_tensor


def reshape_from_matrix(output_tensor, orig_shape_list):
  """Reshapes a rank 2 tensor back to its original rank >= 2 tensor."""
  if len(orig_shape_list) == 2:
    return output_tensor

  output_shape = get_shape_list(output_tensor)

  orig_dims = orig_shape_list[0:-1]
  width = output_shape[-1]

  return tf.reshape(output_tensor, orig_dims + [width])


def assert_rank(tensor, expected_rank, name=None):
  """Raises an exception if the tensor rank is not of the expected rank.

  Args:
    tensor: A tf.Tensor to check the rank of.
    expected_rank: Python integer or list of integers, expected rank.
    name: Optional name of the tensor for the error message.

  Raises:
    ValueError: If the expected shape doesn't match the actual shape.
  """
  if name is None:
    name = tensor.name

  if isinstance(expected_rank, int):
    expected_ranks = {expected_rank}
  else:
    expected_ranks = set(expected_rank)

  actual_rank = tensor.shape.ndims
  if actual_rank not in expected_ranks:
    scope_name = tf.get_variable_scope().name
    raise ValueError(
        "For the tensor `%s` in scope `%s`, the actual rank "
        "`%s` (shape = %s) is not equal to the expected rank `%s`" %
        (name, scope_name, actual_rank, str(tensor.shape), str(expected_rank)))
