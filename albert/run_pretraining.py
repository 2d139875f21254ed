# coding=utf-8
"""Masked-LM and sentence-order pretraining for ALBERT: the library half.

A TF 2.15 compat.v1 port of upstream google-research/albert run_pretraining.py.
The functions keep upstream's names, variable scopes and feature keys; what
upstream read from absl flags (`init_from_group0`, `masked_lm_budget`) is an
argument here, so this module defines no flags. The flags and `main` live in
the top-level `run_pretraining.py`.

Beyond upstream: input files are checked before anything is built (a glob
that matches nothing, an empty or corrupt file, or records whose lengths do
not match --max_seq_length fail early with the file named), and the eval
results are written atomically.
"""
from absl import logging
import tensorflow.compat.v1 as tf

from albert import estimator_utils
from albert import file_utils
from albert import modeling
from albert import optimization

# The keys written to eval_results.txt by an evaluation.
EVAL_KEYS = ("global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
             "sentence_order_accuracy", "sentence_order_loss")


class PretrainingInputError(ValueError):
  """Bad configuration or input data, reported before training starts."""


def model_fn_builder(albert_config, init_checkpoint, learning_rate,
                     num_train_steps, num_warmup_steps, use_tpu,
                     use_one_hot_embeddings, optimizer, poly_power,
                     start_warmup_step, init_from_group0=False):
  """Returns `model_fn` closure for TPUEstimator."""

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """The `model_fn` for TPUEstimator."""
    logging.info("*** Features ***")
    for name in sorted(features.keys()):
      logging.info("  name = %s, shape = %s", name, features[name].shape)

    if "masked_lm_positions" not in features:
      # Upstream parses `token_boundary` when masked_lm_budget > 0 but never
      # implemented the online masking that would consume it.
      raise PretrainingInputError(
          "Online masking (masked_lm_budget > 0) is not implemented; create "
          "the data with offline masking (masked_lm_positions/ids/weights).")

    input_ids = features["input_ids"]
    input_mask = features["input_mask"]
    segment_ids = features["segment_ids"]
    masked_lm_positions = features["masked_lm_positions"]
    masked_lm_ids = features["masked_lm_ids"]
    masked_lm_weights = features["masked_lm_weights"]
    # Upstream keeps the BERT key `next_sentence_labels`; for ALBERT it holds
    # the sentence-order labels (1 = swapped).
    sentence_order_labels = features["next_sentence_labels"]

    seq_length = input_ids.shape.as_list()[-1]
    if seq_length is not None:
      modeling.check_seq_length(seq_length, albert_config,
                                error_cls=PretrainingInputError)

    is_training = (mode == tf.estimator.ModeKeys.TRAIN)

    model = modeling.AlbertModel(
        config=albert_config,
        is_training=is_training,
        input_ids=input_ids,
        input_mask=input_mask,
        token_type_ids=segment_ids,
        use_one_hot_embeddings=use_one_hot_embeddings)

    (masked_lm_loss, masked_lm_example_loss,
     masked_lm_log_probs) = get_masked_lm_output(
         albert_config, model.get_sequence_output(),
         model.get_embedding_table(), masked_lm_positions, masked_lm_ids,
         masked_lm_weights)

    (sentence_order_loss, sentence_order_example_loss,
     sentence_order_log_probs) = get_sentence_order_output(
         albert_config, model.get_pooled_output(), sentence_order_labels)

    total_loss = masked_lm_loss + sentence_order_loss

    # Upstream restores one group unless asked to copy group 0 into every
    # group (or every layer for the net_structure_type variants).
    num_of_initialize_group = 1
    if init_checkpoint:
      logging.info("number of hidden group %d to initialize",
                   albert_config.num_hidden_groups)
      if init_from_group0:
        num_of_initialize_group = albert_config.num_hidden_groups
        if getattr(albert_config, "net_structure_type", 0) > 0:
          num_of_initialize_group = albert_config.num_hidden_layers
    scaffold_fn, _ = estimator_utils.init_from_checkpoint(
        init_checkpoint, use_tpu, num_of_initialize_group)

    if mode == tf.estimator.ModeKeys.TRAIN:
      train_op = optimization.create_optimizer(
          total_loss, learning_rate, num_train_steps, num_warmup_steps,
          use_tpu, optimizer, poly_power, start_warmup_step)
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode,
          loss=total_loss,
          train_op=train_op,
          scaffold_fn=scaffold_fn)

    if mode == tf.estimator.ModeKeys.EVAL:
      metric_values = [
          masked_lm_example_loss, masked_lm_log_probs, masked_lm_ids,
          masked_lm_weights, sentence_order_example_loss,
          sentence_order_log_probs, sentence_order_labels
      ]
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode,
          loss=total_loss,
          eval_metrics=(metric_fn, metric_values),
          scaffold_fn=scaffold_fn)

    raise ValueError("Only TRAIN and EVAL modes are supported: %s" % mode)

  return model_fn


def metric_fn(masked_lm_example_loss, masked_lm_log_probs, masked_lm_ids,
              masked_lm_weights, sentence_order_example_loss,
              sentence_order_log_probs, sentence_order_labels):
  """Computes the loss and accuracy of the model (runs on the host on TPU)."""
  masked_lm_log_probs = tf.reshape(masked_lm_log_probs,
                                   [-1, masked_lm_log_probs.shape[-1]])
  masked_lm_predictions = tf.argmax(
      masked_lm_log_probs, axis=-1, output_type=tf.int32)
  masked_lm_example_loss = tf.reshape(masked_lm_example_loss, [-1])
  masked_lm_ids = tf.reshape(masked_lm_ids, [-1])
  masked_lm_weights = tf.reshape(masked_lm_weights, [-1])
  masked_lm_accuracy = tf.metrics.accuracy(
      labels=masked_lm_ids,
      predictions=masked_lm_predictions,
      weights=masked_lm_weights)
  masked_lm_mean_loss = tf.metrics.mean(
      values=masked_lm_example_loss, weights=masked_lm_weights)

  sentence_order_log_probs = tf.reshape(
      sentence_order_log_probs, [-1, sentence_order_log_probs.shape[-1]])
  sentence_order_predictions = tf.argmax(
      sentence_order_log_probs, axis=-1, output_type=tf.int32)
  sentence_order_labels = tf.reshape(sentence_order_labels, [-1])
  sentence_order_accuracy = tf.metrics.accuracy(
      labels=sentence_order_labels,
      predictions=sentence_order_predictions)
  sentence_order_mean_loss = tf.metrics.mean(
      values=sentence_order_example_loss)

  return {
      "masked_lm_accuracy": masked_lm_accuracy,
      "masked_lm_loss": masked_lm_mean_loss,
      "sentence_order_accuracy": sentence_order_accuracy,
      "sentence_order_loss": sentence_order_mean_loss,
  }


def get_masked_lm_output(albert_config, input_tensor, output_weights, positions,
                         label_ids, label_weights):
  """Get loss and log probs for the masked LM."""
  input_tensor = gather_indexes(input_tensor, positions)

  with tf.variable_scope("cls/predictions"):
    # One more non-linear transform, back down to the embedding width so the
    # output layer can reuse the (tied) word embedding table.
    with tf.variable_scope("transform"):
      input_tensor = _dense(
          input_tensor,
          units=albert_config.embedding_size,
          activation=modeling.get_activation(albert_config.hidden_act),
          kernel_initializer=modeling.create_initializer(
              albert_config.initializer_range))
      input_tensor = modeling.layer_norm(input_tensor)

    # Output weights are the input embeddings; only the bias is new.
    output_bias = tf.get_variable(
        "output_bias",
        shape=[albert_config.vocab_size],
        initializer=tf.zeros_initializer())
    logits = tf.matmul(input_tensor, output_weights, transpose_b=True)
    logits = tf.nn.bias_add(logits, output_bias)
    log_probs = tf.nn.log_softmax(logits, axis=-1)

    label_ids = tf.reshape(label_ids, [-1])
    label_weights = tf.reshape(label_weights, [-1])

    one_hot_labels = tf.one_hot(
        label_ids, depth=albert_config.vocab_size, dtype=tf.float32)

    # Positions are zero-padded up to max_predictions_per_seq; the padding
    # has weight 0 and must not count in the mean.
    per_example_loss = -tf.reduce_sum(log_probs * one_hot_labels, axis=[-1])
    numerator = tf.reduce_sum(label_weights * per_example_loss)
    denominator = tf.reduce_sum(label_weights) + 1e-5
    loss = numerator / denominator

  return (loss, per_example_loss, log_probs)


def _dense(input_tensor, units, activation, kernel_initializer):
  """tf.layers.dense on a rank-2 input, without Keras.

  Creates the same `dense/kernel` [width, units] and `dense/bias` [units]
  variables under the current scope, so upstream checkpoints map unchanged.
  """
  width = modeling.get_shape_list(input_tensor, expected_rank=2)[1]
  with tf.variable_scope("dense"):
    kernel = tf.get_variable("kernel", shape=[width, units],
                             initializer=kernel_initializer)
    bias = tf.get_variable("bias", shape=[units],
                           initializer=tf.zeros_initializer())
  output = tf.nn.bias_add(tf.matmul(input_tensor, kernel), bias)
  if activation is not None:
    output = activation(output)
  return output


def get_sentence_order_output(albert_config, input_tensor, labels):
  """Get loss and log probs for the sentence order prediction."""
  # Binary classification: 0 = segments in order, 1 = swapped.
  with tf.variable_scope("cls/seq_relationship"):
    output_weights = tf.get_variable(
        "output_weights",
        shape=[2, albert_config.hidden_size],
        initializer=modeling.create_initializer(
            albert_config.initializer_range))
    output_bias = tf.get_variable(
        "output_bias", shape=[2], initializer=tf.zeros_initializer())

    logits = tf.matmul(input_tensor, output_weights, transpose_b=True)
    logits = tf.nn.bias_add(logits, output_bias)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    labels = tf.reshape(labels, [-1])
    one_hot_labels = tf.one_hot(labels, depth=2, dtype=tf.float32)
    per_example_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
    loss = tf.reduce_mean(per_example_loss)
    return (loss, per_example_loss, log_probs)


def gather_indexes(sequence_tensor, positions):
  """Gathers the vectors at the specific positions over a minibatch."""
  sequence_shape = modeling.get_shape_list(sequence_tensor, expected_rank=3)
  batch_size = sequence_shape[0]
  seq_length = sequence_shape[1]
  width = sequence_shape[2]

  flat_offsets = tf.reshape(
      tf.range(0, batch_size, dtype=tf.int32) * seq_length, [-1, 1])
  flat_positions = tf.reshape(positions + flat_offsets, [-1])
  flat_sequence_tensor = tf.reshape(sequence_tensor,
                                    [batch_size * seq_length, width])
  output_tensor = tf.gather(flat_sequence_tensor, flat_positions)
  return output_tensor


def name_to_features_spec(max_seq_length, max_predictions_per_seq,
                          masked_lm_budget=0):
  """The tf.Example parsing spec of the pretraining TFRecords."""
  name_to_features = {
      "input_ids": tf.FixedLenFeature([max_seq_length], tf.int64),
      "input_mask": tf.FixedLenFeature([max_seq_length], tf.int64),
      "segment_ids": tf.FixedLenFeature([max_seq_length], tf.int64),
      # The BERT name, kept for data compatibility; holds sentence order.
      "next_sentence_labels": tf.FixedLenFeature([1], tf.int64),
  }
  if masked_lm_budget:
    name_to_features["token_boundary"] = tf.FixedLenFeature(
        [max_seq_length], tf.int64)
  else:
    name_to_features.update({
        "masked_lm_positions":
            tf.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids":
            tf.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights":
            tf.FixedLenFeature([max_predictions_per_seq], tf.float32),
    })
  return name_to_features


def input_fn_builder(input_files,
                     max_seq_length,
                     max_predictions_per_seq,
                     is_training,
                     num_cpu_threads=4,
                     masked_lm_budget=0):
  """Creates an `input_fn` closure to be passed to TPUEstimator."""
  input_files = list(input_files)

  def input_fn(params):
    """The actual input function."""
    batch_size = params["batch_size"]
    name_to_features = name_to_features_spec(
        max_seq_length, max_predictions_per_seq, masked_lm_budget)

    if is_training:
      # Many files read in parallel and shuffled; nondeterministic
      # interleaving (upstream's `sloppy`) adds more randomness.
      d = tf.data.Dataset.from_tensor_slices(tf.constant(input_files))
      d = d.repeat()
      d = d.shuffle(buffer_size=len(input_files))
      cycle_length = min(num_cpu_threads, len(input_files))
      d = d.interleave(
          tf.data.TFRecordDataset,
          cycle_length=cycle_length,
          num_parallel_calls=cycle_length,
          deterministic=False)
      d = d.shuffle(buffer_size=100)
    else:
      # Eval runs a fixed number of steps, so repeat rather than run out.
      d = tf.data.TFRecordDataset(input_files)
      d = d.repeat()

    # TPUs need static shapes, hence drop_remainder everywhere.
    d = d.map(lambda record: _decode_record(record, name_to_features),
              num_parallel_calls=num_cpu_threads)
    d = d.batch(batch_size, drop_remainder=True)
    logging.info("input pipeline: %s", d)
    return d

  return input_fn


def _decode_record(record, name_to_features):
  """Decodes a record to a TensorFlow example."""
  example = tf.parse_single_example(record, name_to_features)

  # tf.Example stores int64, but TPUs only support int32.
  for name in list(example.keys()):
    t = example[name]
    if t.dtype == tf.int64:
      t = tf.cast(t, tf.int32)
    example[name] = t

  return example


def expand_input_files(input_file):
  """Files of --input_file (comma-separated globs), each glob's sorted.

  Unlike upstream, a pattern that matches nothing is an error.
  """
  return file_utils.expand_globs(input_file, PretrainingInputError,
                                 "--input_file")


def check_input_file(path, max_seq_length, max_predictions_per_seq,
                     masked_lm_budget=0):
  """Checks that the first record of `path` matches the parsing spec.

  Upstream fails deep inside the input pipeline, mid-run, when the data was
  made with another --max_seq_length; this names the file and feature.
  """
  spec = name_to_features_spec(max_seq_length, max_predictions_per_seq,
                               masked_lm_budget)
  try:
    first = next(iter(tf.io.tf_record_iterator(path)), None)
  except tf.errors.OpError as e:
    raise PretrainingInputError(
        "%s: record 1: not a readable TFRecord file (%s)" % (path, e.message))
  if first is None:
    raise PretrainingInputError("%s: the file contains no records." % path)
  try:
    example = tf.train.Example.FromString(first)
  except Exception as e:  # pylint: disable=broad-except
    raise PretrainingInputError(
        "%s: record 1: not a tf.train.Example (%s)" % (path, e))
  features = example.features.feature
  for name, feature_spec in sorted(spec.items()):
    if name not in features:
      raise PretrainingInputError(
          "%s: record 1: feature %r is missing (found: %s)."
          % (path, name, ", ".join(sorted(features.keys()))))
    kind = "float_list" if feature_spec.dtype == tf.float32 else "int64_list"
    values = getattr(features[name], kind).value
    expected = feature_spec.shape[0]
    if len(values) != expected:
      hint = ""
      if name in ("input_ids", "input_mask", "segment_ids", "token_boundary"):
        hint = " (--max_seq_length=%d must match data generation)" % (
            max_seq_length)
      elif name.startswith("masked_lm_"):
        hint = " (--max_predictions_per_seq=%d must match data generation)" % (
            max_predictions_per_seq)
      raise PretrainingInputError(
          "%s: record 1: feature %r has %d %s values, expected %d%s."
          % (path, name, len(values), kind, expected, hint))


def format_eval_results(result):
  """`key = value` lines, sorted by key, as upstream's eval_results.txt."""
  return "".join("%s = %s\n" % (key, str(result[key]))
                 for key in sorted(result.keys()))


def copy_checkpoint(checkpoint_path, suffix="best"):
  """Copies the files of `model.ckpt-N` to `model.ckpt-<suffix>` (each
  through a temporary name); returns the paths written."""
  target_prefix = checkpoint_path.rsplit("-", 1)[0] + "-" + suffix
  copied = file_utils.copy_checkpoint(checkpoint_path, target_prefix)
  for dst in copied:
    logging.info("saved %s", dst)
  return copied