"""ALBERT token classifier for NER: the model_fn for TPUEstimator.

Encoder (`bert/...`, restorable from an encoder or pretraining checkpoint),
dropout 0.1 while training, then one dense layer per piece to label logits
(`ner/output_weights`, `ner/output_bias`, always freshly initialised).
The loss is the cross-entropy averaged over positions with `label_mask` 1
of real examples (`is_real_example` 1), so sub-word pieces, [CLS]/[SEP],
sequence padding and batch-padding examples contribute nothing. With
`crf=True` (run_ner.py --decode=crf) it is instead a linear-chain CRF's
negative log-likelihood over those positions, per labelled word
(bio.ner.crf; its variables `ner/crf_*` are fresh like the classifier).

Batches may be shorter than max_seq_length (length-bucketed input, see
bio.ner.features): the graph takes any sequence length up to the config's
max_position_embeddings. `compute_dtype` and `train_options` select mixed
precision, accumulation and loss scaling (albert.precision).
"""
from absl import logging
import tensorflow.compat.v1 as tf

from albert import estimator_utils
from albert import modeling
from albert import optimization
from bio.ner import crf as ner_crf

CLASSIFIER_SCOPE = "ner"
ENCODER_SCOPE = "bert"


def token_classifier(sequence_output, num_labels, is_training,
                     dropout_prob=0.1, initializer_range=0.02):
  """Per-position logits [batch, seq, num_labels] from the encoder output."""
  hidden_size = modeling.get_shape_list(sequence_output, expected_rank=3)[-1]
  with tf.variable_scope(CLASSIFIER_SCOPE):
    output_weights = tf.get_variable(
        "output_weights", [num_labels, hidden_size],
        initializer=tf.truncated_normal_initializer(stddev=initializer_range))
    output_bias = tf.get_variable(
        "output_bias", [num_labels], initializer=tf.zeros_initializer())
    if is_training and dropout_prob > 0:
      sequence_output = tf.nn.dropout(sequence_output, rate=dropout_prob)
    logits = tf.einsum("bsh,lh->bsl", sequence_output, output_weights)
    return tf.nn.bias_add(logits, output_bias)


def masked_token_loss(logits, label_ids, weights):
  """(mean loss over weighted positions, per-position loss [batch, seq])."""
  num_labels = modeling.get_shape_list(logits, expected_rank=3)[-1]
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  one_hot = tf.one_hot(label_ids, depth=num_labels, dtype=tf.float32)
  per_token_loss = -tf.reduce_sum(one_hot * log_probs, axis=-1)
  # Weights are 0/1 counts; max(., 1) keeps an all-padding batch at loss 0.
  denominator = tf.maximum(tf.reduce_sum(weights), 1.0)
  loss = tf.reduce_sum(per_token_loss * weights) / denominator
  return loss, per_token_loss


def token_weights(label_mask, is_real_example):
  """[batch, seq] float weights: labelled positions of real examples."""
  mask = tf.cast(label_mask, tf.float32)
  real = tf.cast(is_real_example, tf.float32)
  return mask * tf.expand_dims(real, -1)


def _restore_encoder(init_checkpoint, use_tpu):
  """Restores the `bert/` variables that exist so far; logs the result.

  Called before the classifier variables are created, so they can never be
  taken from the checkpoint (a fine-tuned NER checkpoint with another label
  set would otherwise clash in shape), and always start fresh.
  """
  scaffold_fn, initialized = estimator_utils.init_from_checkpoint(
      init_checkpoint, use_tpu, num_of_group=0)
  if init_checkpoint:
    encoder_vars = [v for v in tf.trainable_variables()
                    if v.name.startswith(ENCODER_SCOPE + "/")]
    missing = [v.name for v in encoder_vars if v.name not in initialized]
    if missing:
      logging.warning(
          "%d of %d encoder variables were NOT found in %s and start from "
          "random values: %s", len(missing), len(encoder_vars),
          init_checkpoint, ", ".join(missing))
    else:
      logging.info("All %d encoder (%s/) variables restored from %s.",
                   len(encoder_vars), ENCODER_SCOPE, init_checkpoint)
  return scaffold_fn


def model_fn_builder(albert_config, num_labels, init_checkpoint, learning_rate,
                     num_train_steps, num_warmup_steps, use_tpu,
                     optimizer="adamw", use_one_hot_embeddings=False,
                     dropout_prob=0.1, seed=None, compute_dtype=tf.float32,
                     train_options=None, crf=False):
  """Returns a `model_fn` closure for TPUEstimator.

  `seed` (optional) is the graph-level seed of the model's graph: with it,
  the classifier's initial weights and the dropout masks repeat. `crf`:
  train with the CRF loss (bio.ner.crf) instead of per-word cross-entropy.
  """

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    if seed is not None:
      tf.set_random_seed(seed)
    logging.info("*** Features ***")
    for name in sorted(features.keys()):
      logging.info("  name = %s, shape = %s", name, features[name].shape)

    input_ids = features["input_ids"]
    label_ids = features["label_ids"]
    if "is_real_example" in features:
      is_real_example = features["is_real_example"]
    else:
      is_real_example = tf.ones(tf.shape(input_ids)[:1], dtype=tf.int32)
    is_training = mode == tf.estimator.ModeKeys.TRAIN

    model = modeling.AlbertModel(
        config=albert_config,
        is_training=is_training,
        input_ids=input_ids,
        input_mask=features["input_mask"],
        token_type_ids=features["segment_ids"],
        use_one_hot_embeddings=use_one_hot_embeddings,
        compute_dtype=compute_dtype)

    # Only training reads init_checkpoint: eval and predict always restore a
    # fine-tuned checkpoint of the model directory over it.
    scaffold_fn = None
    if is_training:
      scaffold_fn = _restore_encoder(init_checkpoint, use_tpu)

    logits = token_classifier(model.get_sequence_output(), num_labels,
                              is_training, dropout_prob=dropout_prob,
                              initializer_range=albert_config.initializer_range)
    if crf:
      with tf.variable_scope(CLASSIFIER_SCOPE):
        crf_params = ner_crf.create_params(num_labels)
    if is_training:
      for var in tf.trainable_variables(CLASSIFIER_SCOPE + "/"):
        logging.info("  name = %s, shape = %s, *FRESH* (classifier head)",
                     var.name, var.shape)

    weights = token_weights(features["label_mask"], is_real_example)
    if crf:
      total_loss, nll, loss_weights = ner_crf.window_loss(
          logits, label_ids, features["label_mask"], is_real_example,
          crf_params)
      # Per window, per labelled word: its mean weighted by words is the loss.
      loss_values = nll / tf.maximum(loss_weights, 1.0)
    else:
      total_loss, loss_values = masked_token_loss(logits, label_ids, weights)
      loss_weights = weights
    probabilities = tf.nn.softmax(logits, axis=-1)
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)

    if mode == tf.estimator.ModeKeys.TRAIN:
      estimator_utils.record_training_loss(total_loss, use_tpu)
      train_op = optimization.create_optimizer(
          total_loss, learning_rate, num_train_steps, num_warmup_steps,
          use_tpu, optimizer, train_options=train_options)
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=total_loss, train_op=train_op,
          scaffold_fn=scaffold_fn)

    if mode == tf.estimator.ModeKeys.EVAL:
      eval_metrics = (metric_fn, [loss_values, loss_weights, label_ids,
                                  predictions, weights])
      return tf.estimator.tpu.TPUEstimatorSpec(
          mode=mode, loss=total_loss, eval_metrics=eval_metrics,
          scaffold_fn=scaffold_fn)

    return tf.estimator.tpu.TPUEstimatorSpec(
        mode=mode,
        predictions={"predictions": predictions,
                     "probabilities": probabilities},
        scaffold_fn=scaffold_fn)

  return model_fn


def metric_fn(loss_values, loss_weights, label_ids, predictions, weights):
  """Token accuracy over labelled positions of real examples, and the
  loss (per position [batch, seq], or per window [batch] with the CRF).

  Entity-level P/R/F1 need whole sentences and are computed in Python from
  predictions (bio.ner.metrics); these are the in-graph companions.
  """
  return {
      "eval_token_accuracy": tf.metrics.accuracy(
          labels=label_ids, predictions=predictions, weights=weights),
      "eval_loss": tf.metrics.mean(values=loss_values, weights=loss_weights),
  }
