"""Length-aware NER batches: same examples, same loss, same predictions."""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from albert import modeling
from bio.ner import features as ner_features
from bio.ner import model as ner_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
MAX_LEN = 64


def _features(rng, count):
  feats = []
  for index in range(count):
    length = int(rng.choice([3, 5, 9, 17, 30, 40, 63, 64]))
    ids = list(rng.randint(5, 100, length))
    label_mask = list((rng.rand(length) < 0.6).astype(int))
    label_mask[0] = 0
    pad = MAX_LEN - length
    feats.append(ner_features.InputFeatures(
        input_ids=ids + [0] * pad, input_mask=[1] * length + [0] * pad,
        segment_ids=[0] * MAX_LEN,
        label_ids=list(rng.randint(0, 3, length)) + [0] * pad,
        label_mask=label_mask + [0] * pad, is_real_example=1,
        sentence_index=index, word_ids=[-1] * MAX_LEN))
  return feats


def _epoch(feats, batch_size, **kwargs):
  """Every batch of one pass (no repeat) of the training pipeline."""
  arrays = ner_features.features_to_arrays(feats)
  arrays["sentence_index"] = np.arange(len(feats), dtype=np.int32)
  with tf.Graph().as_default(), tf.Session() as sess:
    d = tf.data.Dataset.from_tensor_slices(arrays).shuffle(100, seed=1)
    d = ner_features.bucket_batches(d, batch_size, **kwargs)
    nxt = tf.data.make_one_shot_iterator(d).get_next()
    out = []
    while True:
      try:
        out.append(sess.run(nxt))
      except tf.errors.OutOfRangeError:
        return out


def test_bucketing_keeps_every_example_once_per_epoch_unchanged():
  feats = _features(np.random.RandomState(0), 50)
  batches = _epoch(feats, 4, boundaries=[8, 16, 32], drop_remainder=False)
  seen = np.concatenate([b["sentence_index"] for b in batches])
  assert sorted(seen) == list(range(len(feats)))
  for batch in batches:
    width = batch["input_ids"].shape[1]
    lengths = batch["input_mask"].sum(1)
    assert width == lengths.max() < MAX_LEN + 1
    for row, index in enumerate(batch["sentence_index"]):
      f = feats[index]
      for key in ner_features.SEQUENCE_KEYS:
        np.testing.assert_array_equal(batch[key][row], getattr(f, key)[:width])
        assert not any(getattr(f, key)[width:])  # only padding was cut
  # Bucketing groups lengths: a batch spans one bucket.
  bounds = [0, 8, 16, 32, 10 ** 9]
  for batch in batches:
    lengths = batch["input_mask"].sum(1)
    buckets = {np.searchsorted(bounds, n, side="right") for n in lengths}
    assert len(buckets) == 1


def test_length_order_sorts_longest_first_stably():
  feats = _features(np.random.RandomState(1), 20)
  order = ner_features.length_order(feats)
  lengths = [sum(feats[i].input_mask) for i in order]
  assert lengths == sorted(lengths, reverse=True)
  assert sorted(order) == list(range(20))


def test_trimmed_batch_same_loss_and_predictions_as_fixed_padding():
  config = modeling.AlbertConfig.from_json_file(
      os.path.join(ROOT, "albert", "configs", "albert_tiny.json"))
  config.vocab_size = 100
  feats = [f for f in _features(np.random.RandomState(2), 40)
           if sum(f.input_mask) <= 30][:6]
  arrays = ner_features.features_to_arrays(feats)
  width = int(arrays["input_mask"].sum(1).max())

  def run(cut, mode):
    """The model_fn's `mode` output with windows cut to `cut` pieces."""
    with tf.Graph().as_default():
      tf.set_random_seed(3)
      feeds = {k: tf.constant(v[:, :cut] if v.ndim == 2 else v)
               for k, v in arrays.items()}
      spec = ner_model.model_fn_builder(config, 3, None, 1e-5, 10, 1,
                                        False)(feeds, None, mode, {})
      with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        if mode == tf.estimator.ModeKeys.EVAL:
          return sess.run(spec.loss)
        return sess.run(spec.predictions)

  eval_mode, predict_mode = (tf.estimator.ModeKeys.EVAL,
                             tf.estimator.ModeKeys.PREDICT)
  np.testing.assert_allclose(run(MAX_LEN, eval_mode), run(width, eval_mode),
                             rtol=1e-5)
  predictions = [run(MAX_LEN, predict_mode), run(width, predict_mode)]
  np.testing.assert_array_equal(predictions[0]["predictions"][:, :width],
                                predictions[1]["predictions"])
  np.testing.assert_allclose(predictions[0]["probabilities"][:, :width],
                             predictions[1]["probabilities"], atol=1e-5)
