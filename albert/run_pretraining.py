# coding=utf-8
"""Masked-LM and sentence-order pretraining for ALBERT: the library half.

A TF 2.15 compat.v1 port of upstream google-research/albert run_pretraining.py.
The functions keep upstream's names, variable scopes and feature keys; what
upstream read from absl flags is an argument here or a field of
`PretrainingOptions`, so this module defines no flags. The flags live in the
top-level `run_pretraining.py`, whose `main` calls `run(options)`:

  options = PretrainingOptions.from_flags(flags.FLAGS)
  run(options)   # raises PretrainingInputError for bad input

Outputs in output_dir are upstream's (model.ckpt-N, eval_results.txt,
model.ckpt-best) plus `spm_record.json` (albert/vocab_record.py) when
--spm_model_file is given.

Beyond upstream, everything is checked before anything is written, each
failure one PretrainingInputError naming the file or flag: a glob that
matches nothing, a config or --init_checkpoint that does not exist, records
whose lengths do not match --max_seq_length, a truncated or corrupt TFRecord
file (CRC), token ids >= the config's vocab_size, checkpoints in output_dir
of another model shape, and an --spm_model_file that is not the one of the
checkpoints. A training run holds `file_utils.DirLock(output_dir)`, so a
second run on the same directory stops. An eval-only run evaluates the
checkpoints there and waits for new ones only while a training run holds
that lock (upstream waits forever). Eval results are written atomically.
`seed` (--seed, not upstream) fixes initialisation, dropout and the order of
the training data (deterministic interleaving); unset, runs differ as
upstream's do. `stop_at_step` (--stop_at_step, not upstream) ends a run
part-way through its schedule, e.g. to check it (bio.experiments.attention)
before spending the rest; the same flags without it continue the run.
"""
import dataclasses
import os
import time
from typing import Optional

from absl import flags
from absl import logging
import tensorflow.compat.v1 as tf

from albert import estimator_utils
from albert import file_utils
from albert import modeling
from albert import optimization
from albert import precision
from albert import vocab_record

# The keys written to eval_results.txt by an evaluation.
EVAL_KEYS = ("global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
             "sentence_order_accuracy", "sentence_order_loss")


class PretrainingInputError(ValueError):
  """Bad configuration or input data, reported before training starts."""


def model_fn_builder(albert_config, init_checkpoint, learning_rate,
                     num_train_steps, num_warmup_steps, use_tpu,
                     use_one_hot_embeddings, optimizer, poly_power,
                     start_warmup_step, init_from_group0=False,
                     compute_dtype=tf.float32, train_options=None, seed=None):
  """Returns `model_fn` closure for TPUEstimator.

  `compute_dtype` is the encoder's (bfloat16: mixed precision through
  casts); `train_options` (`optimization.TrainOptions`) the accumulation,
  loss-scaling and replica settings of the train op; `seed` (not upstream)
  the graph-level seed, so that initialisation and dropout repeat.
  """

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """The `model_fn` for TPUEstimator."""
    if seed is not None:
      tf.set_random_seed(seed)
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
        use_one_hot_embeddings=use_one_hot_embeddings,
        compute_dtype=compute_dtype)

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
      estimator_utils.record_training_loss(total_loss, use_tpu)
      train_op = optimization.create_optimizer(
          total_loss, learning_rate, num_train_steps, num_warmup_steps,
          use_tpu, optimizer, poly_power, start_warmup_step,
          train_options=train_options)
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
                     masked_lm_budget=0,
                     seed=None,
                     skip_batches=0):
  """Creates an `input_fn` closure to be passed to TPUEstimator.

  With `seed` (not upstream) the training order repeats: seeded shuffles,
  deterministic interleaving. `skip_batches` (training only) drops the
  first batches of that order, those a resumed run has already read, so
  the order continues where it stopped instead of starting again.
  """
  input_files = list(input_files)

  def input_fn(params):
    """The actual input function."""
    batch_size = params["batch_size"]
    name_to_features = name_to_features_spec(
        max_seq_length, max_predictions_per_seq, masked_lm_budget)

    if is_training:
      # Many files read in parallel and shuffled; unless seeded,
      # nondeterministic interleaving (upstream's `sloppy`) adds more
      # randomness.
      d = tf.data.Dataset.from_tensor_slices(tf.constant(input_files))
      d = d.repeat()
      d = d.shuffle(buffer_size=len(input_files), seed=seed)
      cycle_length = min(num_cpu_threads, len(input_files))
      d = d.interleave(
          tf.data.TFRecordDataset,
          cycle_length=cycle_length,
          num_parallel_calls=cycle_length,
          deterministic=seed is not None)
      d = d.shuffle(buffer_size=100, seed=seed)
      if skip_batches:
        # Raw records, before parsing: skipping costs a read, not a decode.
        d = d.skip(skip_batches * batch_size)
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
                     masked_lm_budget=0, features=None):
  """Checks that the first record of `path` matches the parsing spec (only
  the named `features`, if given).

  Upstream fails deep inside the input pipeline, mid-run, when the data was
  made with another --max_seq_length; this names the file and feature.
  """
  spec = name_to_features_spec(max_seq_length, max_predictions_per_seq,
                               masked_lm_budget)
  if features is not None:
    spec = {name: spec[name] for name in features}
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

# ---------------------------------------------------------------------------
# The run: options, checks, training and the eval loop.

# Seconds between looks for a new checkpoint while a training run is alive.
EVAL_POLL_SECONDS = 5


@dataclasses.dataclass(frozen=True)
class PretrainingOptions:
  """Every setting of a run: the flags of run_pretraining.py, same names
  and defaults."""
  albert_config_file: str
  input_file: str
  output_dir: str
  init_checkpoint: Optional[str] = None
  spm_model_file: Optional[str] = None
  max_seq_length: int = 512
  max_predictions_per_seq: int = 20
  do_train: bool = True
  do_eval: bool = False
  train_batch_size: int = 4096
  eval_batch_size: int = 64
  optimizer: str = "lamb"
  learning_rate: float = 0.00176
  poly_power: float = 1.0
  num_train_steps: int = 125000
  # Not upstream: end this run at this step (None: at num_train_steps); the
  # learning-rate schedule still spans num_train_steps, so a later run with
  # the same flags but no stop continues it.
  stop_at_step: Optional[int] = None
  num_warmup_steps: int = 3125
  start_warmup_step: int = 0
  max_eval_steps: int = 100
  init_from_group0: bool = False
  masked_lm_budget: float = 0
  seed: Optional[int] = None
  check_input_files: bool = True
  tpu: estimator_utils.TpuOptions = estimator_utils.TpuOptions()
  training: precision.TrainingOptions = precision.TrainingOptions()

  @classmethod
  def from_flags(cls, flag_values=flags.FLAGS):
    names = [f.name for f in dataclasses.fields(cls)
             if f.name not in ("tpu", "training")]
    return cls(tpu=estimator_utils.TpuOptions.from_flags(flag_values),
               training=precision.TrainingOptions.from_flags(flag_values),
               **{name: flag_values[name].value for name in names})


@dataclasses.dataclass(frozen=True)
class _Plan:
  """What the checks found: the inputs of the estimator."""
  albert_config: modeling.AlbertConfig
  input_files: list
  init_checkpoint: Optional[str]


def validate_options(options):
  """Raises PretrainingInputError for flag values no run can use."""
  if not options.do_train and not options.do_eval:
    raise PretrainingInputError(
        "At least one of `do_train` or `do_eval` must be True.")
  for name in ("train_batch_size", "eval_batch_size", "num_train_steps",
               "max_seq_length", "max_predictions_per_seq", "max_eval_steps"):
    if getattr(options, name) <= 0:
      raise PretrainingInputError("--%s must be positive, got %d." % (
          name, getattr(options, name)))
  try:
    precision.validate(options.training, options.tpu.use_tpu,
                       train_batch_size=options.train_batch_size)
  except precision.TrainingSetupError as e:
    raise PretrainingInputError(str(e)) from e
  if options.stop_at_step is not None and not (
      0 < options.stop_at_step <= options.num_train_steps):
    raise PretrainingInputError(
        "--stop_at_step=%d must be between 1 and --num_train_steps=%d." % (
            options.stop_at_step, options.num_train_steps))
  steps = options.training.gradient_accumulation_steps
  if options.train_batch_size % steps:
    raise PretrainingInputError(
        "--train_batch_size=%d is not a multiple of "
        "--gradient_accumulation_steps=%d" % (options.train_batch_size, steps))
  if options.masked_lm_budget:
    # Upstream defines the flag and parses `token_boundary` for it, but has no
    # online masking to consume it.
    raise PretrainingInputError(
        "--masked_lm_budget > 0 (online masking) is not implemented, as "
        "upstream; create the data with offline masking instead.")


def load_config(path):
  """The AlbertConfig of --albert_config_file, or PretrainingInputError."""
  if not tf.io.gfile.exists(path):
    raise PretrainingInputError(
        "--albert_config_file %s does not exist." % path)
  try:
    return modeling.AlbertConfig.from_json_file(path)
  except ValueError as e:
    raise PretrainingInputError(
        "--albert_config_file %s is not a valid ALBERT config: %s" % (path, e))


def scan_input_file(path, max_seq_length, max_predictions_per_seq):
  """Reads every record of `path` once; returns the largest input_ids and
  masked_lm_ids value.

  TFRecordDataset checks each record's length and CRC, so a truncated or
  corrupt file fails here, named, instead of mid-run. About 100 MB/s per
  core (5 MB of seq-512 records: 0.05 s); the framing alone is ~600 MB/s.
  """
  spec = name_to_features_spec(max_seq_length, max_predictions_per_seq)
  spec = {k: spec[k] for k in ("input_ids", "masked_lm_ids")}
  with tf.Graph().as_default(), tf.Session() as sess:
    d = tf.data.TFRecordDataset([path]).batch(1024)
    d = d.map(lambda batch: tf.io.parse_example(batch, spec))
    d = d.map(lambda f: tf.stack([tf.reduce_max(f["input_ids"]),
                                  tf.reduce_max(f["masked_lm_ids"])]))
    largest = d.reduce(tf.constant([-1, -1], tf.int64), tf.maximum)
    try:
      return [int(v) for v in sess.run(largest)]
    except tf.errors.DataLossError as e:
      raise PretrainingInputError(
          "%s: truncated or corrupt TFRecord file (%s); recreate it with "
          "create_pretraining_data.py." % (path, e.message.split("\n")[0]))
    except tf.errors.InvalidArgumentError as e:
      raise PretrainingInputError(
          "%s: a record does not match --max_seq_length=%d / "
          "--max_predictions_per_seq=%d (%s)." % (
              path, max_seq_length, max_predictions_per_seq,
              e.message.split("\n")[0]))


def check_token_ids(path, largest, vocab_size, config_file):
  """Raises if an id of `path` is outside the model's vocabulary."""
  for name, value in zip(("input_ids", "masked_lm_ids"), largest):
    if value >= vocab_size:
      raise PretrainingInputError(
          "%s: token id %d in %s is >= vocab_size %d of %s: the data was "
          "made with a larger vocabulary than the model's; recreate it with "
          "the model's --spm_model_file or fix vocab_size." % (
              path, value, name, vocab_size, config_file))


def check_input_files(options, albert_config):
  """Every input file: spec of its first record, then (optionally) a full
  scan for framing, CRC and token ids. Returns the file list."""
  input_files = expand_input_files(options.input_file)
  logging.info("*** Input Files ***")
  for input_file in input_files:
    logging.info("  %s", input_file)
    check_input_file(input_file, options.max_seq_length,
                     options.max_predictions_per_seq, options.masked_lm_budget)
    if options.check_input_files:
      largest = scan_input_file(input_file, options.max_seq_length,
                                options.max_predictions_per_seq)
      check_token_ids(input_file, largest, albert_config.vocab_size,
                      options.albert_config_file)
  return input_files


def model_variable_shapes(albert_config):
  """{name: shape} of the variables the pretraining model creates."""
  with tf.Graph().as_default() as graph:
    ids = tf.zeros([1, 8], tf.int32)
    model = modeling.AlbertModel(config=albert_config, is_training=False,
                                 input_ids=ids, input_mask=ids + 1,
                                 token_type_ids=ids)
    get_masked_lm_output(albert_config, model.get_sequence_output(),
                         model.get_embedding_table(),
                         tf.zeros([1, 1], tf.int32), tf.zeros([1, 1], tf.int32),
                         tf.ones([1, 1]))
    get_sentence_order_output(albert_config, model.get_pooled_output(),
                              tf.zeros([1], tf.int32))
    return {v.op.name: v.shape.as_list()
            for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}


def check_output_dir_checkpoint(output_dir, albert_config, config_file):
  """Training resumes from output_dir's latest checkpoint: it must hold
  every variable of this model with this model's shape."""
  latest = tf.train.latest_checkpoint(output_dir)
  if not latest:
    return
  problems = file_utils.checkpoint_shape_problems(
      latest, model_variable_shapes(albert_config))
  if not problems:
    return
  name, saved_shape, shape = problems[0]
  if saved_shape is None:
    raise PretrainingInputError(
        "--output_dir %s holds checkpoint %s of another model: it has no "
        "variable %s of %s; use another output directory." % (
            output_dir, latest, name, config_file))
  raise PretrainingInputError(
      "--output_dir %s holds checkpoint %s of another model: %s has "
      "shape %s there but %s with %s; use another output directory." % (
          output_dir, latest, name, saved_shape, shape, config_file))


def check_vocabulary(options):
  """--spm_model_file against the records of --init_checkpoint and of the
  checkpoints being resumed in output_dir."""
  vocab_record.check(options.init_checkpoint, options.spm_model_file,
                     PretrainingInputError)
  if tf.io.gfile.isdir(options.output_dir):
    vocab_record.check(options.output_dir, options.spm_model_file,
                       PretrainingInputError, what="--output_dir")


def prepare(options):
  """Every check of a run; writes nothing. Returns a `_Plan`."""
  validate_options(options)
  albert_config = load_config(options.albert_config_file)
  modeling.check_seq_length(options.max_seq_length, albert_config,
                            options.albert_config_file, PretrainingInputError)
  if options.spm_model_file and not tf.io.gfile.exists(
      options.spm_model_file):
    raise PretrainingInputError(
        "--spm_model_file %s does not exist." % options.spm_model_file)
  input_files = check_input_files(options, albert_config)
  init_checkpoint = None
  if options.init_checkpoint:
    init_checkpoint = file_utils.resolve_checkpoint(
        options.init_checkpoint, error_cls=PretrainingInputError)
  if tf.io.gfile.isdir(options.output_dir):
    check_output_dir_checkpoint(options.output_dir, albert_config,
                                options.albert_config_file)
  check_vocabulary(options)
  return _Plan(albert_config, input_files, init_checkpoint)


def make_estimator(options, plan, training_plan=None):
  """The TPUEstimator (a plain one on CPU/GPU) of the run.

  `training_plan` (`precision.plan`): precision, accumulation, strategy;
  a micro-batch of train_batch_size / K examples is fed per session run.
  """
  training_plan = training_plan or precision.plan(
      options.training, options.tpu.use_tpu)
  micro_batches = options.training.gradient_accumulation_steps
  model_fn = model_fn_builder(
      albert_config=plan.albert_config,
      init_checkpoint=plan.init_checkpoint,
      learning_rate=options.learning_rate,
      num_train_steps=options.num_train_steps,
      num_warmup_steps=options.num_warmup_steps,
      use_tpu=options.tpu.use_tpu,
      use_one_hot_embeddings=options.tpu.use_tpu,
      optimizer=options.optimizer,
      poly_power=options.poly_power,
      start_warmup_step=options.start_warmup_step,
      init_from_group0=options.init_from_group0,
      compute_dtype=training_plan.compute_dtype,
      train_options=optimization.TrainOptions(
          gradient_accumulation_steps=micro_batches,
          loss_scale=training_plan.loss_scale),
      seed=options.seed)
  return estimator_utils.make_estimator(
      model_fn, options.tpu, options.output_dir,
      train_batch_size=options.train_batch_size // micro_batches,
      eval_batch_size=options.eval_batch_size,
      session_config=precision.session_config(training_plan),
      strategy=precision.make_strategy(training_plan))


def _input_fn(options, input_files, is_training, skip_batches=0):
  return input_fn_builder(
      input_files=input_files,
      max_seq_length=options.max_seq_length,
      max_predictions_per_seq=options.max_predictions_per_seq,
      is_training=is_training,
      masked_lm_budget=options.masked_lm_budget,
      seed=options.seed,
      skip_batches=skip_batches)


def seeded_skip_batches(options, checkpoint_path):
  """Input batches a resumed seeded run has already read: the restored
  step times the micro-batches per step (0 when unseeded, as upstream,
  whose resumed runs draw a new order anyway, or when starting afresh)."""
  if options.seed is None or not checkpoint_path:
    return 0
  step = int(tf.train.load_variable(checkpoint_path,
                                    tf.GraphKeys.GLOBAL_STEP))
  return step * options.training.gradient_accumulation_steps


def last_step(options):
  """The step this run trains to (and evaluates up to)."""
  return options.stop_at_step or options.num_train_steps


def train(estimator, options, input_files):
  logging.info("***** Running training *****")
  logging.info("  Batch size = %d", options.train_batch_size)
  skip = seeded_skip_batches(options, estimator.latest_checkpoint())
  if skip:
    logging.info("Resuming a seeded run: skipping the %d batches it has "
                 "read, so its data order continues.", skip)
  # On TPU hooks only run between loops of iterations_per_loop steps.
  throughput = estimator_utils.ThroughputHook(
      options.train_batch_size, last_step(options),
      every_n_steps=min(options.tpu.iterations_per_loop, 100))
  if last_step(options) < options.num_train_steps:
    logging.info("Stopping at step %d of the %d-step schedule "
                 "(--stop_at_step).", last_step(options),
                 options.num_train_steps)
  estimator_utils.train(estimator,
                        _input_fn(options, input_files, True, skip),
                        last_step(options), hooks=[throughput])


class _EvalResults(object):
  """eval_results.txt (every evaluation, rewritten atomically) and the copy
  of the best checkpoint by masked_lm_accuracy, as upstream."""

  def __init__(self, output_dir):
    self.path = os.path.join(output_dir, "eval_results.txt")
    self.text = ""
    self.best = 0

  def add(self, checkpoint_path, result):
    logging.info("***** Eval results (%s) *****", checkpoint_path)
    for key in sorted(result.keys()):
      logging.info("  %s = %s", key, str(result[key]))
    self.text += format_eval_results(result)
    file_utils.atomic_write(self.path, self.text)
    if result["masked_lm_accuracy"] > self.best:
      self.best = result["masked_lm_accuracy"]
      copy_checkpoint(checkpoint_path, "best")
    return int(result["global_step"])


def evaluate(estimator, options, input_files, poll_seconds=EVAL_POLL_SECONDS):
  """Upstream's eval loop: evaluates each new checkpoint of output_dir.

  Stops after a checkpoint at num_train_steps (or --stop_at_step), as
  upstream, or once no other live run holds output_dir's DirLock and the
  latest checkpoint has been evaluated (upstream waits forever for steps
  that never come).
  """
  logging.info("***** Running evaluation *****")
  logging.info("  Batch size = %d", options.eval_batch_size)
  eval_input_fn = _input_fn(options, input_files, False)
  results = _EvalResults(options.output_dir)
  evaluated = None
  waiting = False
  while True:
    # The holder is read before the checkpoint: a run that ends in between
    # has already written its last checkpoint.
    holder = file_utils.lock_holder(options.output_dir)
    checkpoint_path = estimator.latest_checkpoint()
    if checkpoint_path and checkpoint_path != evaluated:
      waiting = False
      result = estimator.evaluate(input_fn=eval_input_fn,
                                  steps=options.max_eval_steps,
                                  checkpoint_path=checkpoint_path)
      evaluated = checkpoint_path
      if results.add(checkpoint_path, result) >= last_step(options):
        return
      continue
    if holder is None:
      _stop_evaluating(options, evaluated)
      return
    if not waiting:
      logging.info("Waiting for a new checkpoint in %s from the training run "
                   "(pid %d on %s); evaluation ends after step %d.",
                   options.output_dir, holder[1], holder[0],
                   last_step(options))
      waiting = True
    time.sleep(poll_seconds)


def _stop_evaluating(options, evaluated):
  if evaluated is None:
    raise PretrainingInputError(
        "--do_eval: --output_dir %s holds no checkpoint to evaluate and no "
        "training run is writing there; train first (--do_train)."
        % options.output_dir)
  logging.info("No training run holds %s: evaluated up to %s; stopping.",
               options.output_dir, evaluated)


def _train_locked(options, plan):
  """Training (then eval) while holding output_dir's DirLock."""
  tf.io.gfile.makedirs(options.output_dir)
  with file_utils.DirLock(options.output_dir, warn=logging.warning):
    if options.spm_model_file:
      vocab_record.write(options.output_dir, options.spm_model_file)
    estimator = make_estimator(options, plan)
    train(estimator, options, plan.input_files)
    if options.do_eval:
      if estimator_utils.is_multi_worker(estimator):
        with estimator_utils.outside_cluster():
          estimator = make_estimator(options, plan, precision.plan(
              dataclasses.replace(options.training, distribution="none")))
      evaluate(estimator, options, plan.input_files)


def _train_as_worker(options, plan):
  """A non-chief worker of --distribution=multi_worker: trains only. The
  chief holds output_dir's lock, writes the checkpoints and evaluates;
  TensorFlow gives this worker output_dir/tmp_worker_<i> for its own
  summaries."""
  train(make_estimator(options, plan), options, plan.input_files)


def run(options):
  """Checks everything, then trains and/or evaluates.

  Raises PretrainingInputError (one line, nothing written) for bad input,
  flags, or an output_dir in use by another training run.
  """
  try:
    precision.configure_cpu_replicas(options.training)
  except precision.TrainingSetupError as e:
    raise PretrainingInputError(str(e)) from e
  plan = prepare(options)
  if not options.do_train:
    evaluate(make_estimator(options, plan), options, plan.input_files)
    return
  if (options.training.distribution == "multi_worker" and
      not precision.worker_task().is_chief):
    _train_as_worker(options, plan)
    return
  try:
    _train_locked(options, plan)
  except file_utils.DirLockedError as e:
    raise PretrainingInputError(str(e))
