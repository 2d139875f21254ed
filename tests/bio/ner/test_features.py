"""Word/piece alignment, windows and re-assembly of NER features."""
import os
import random

import numpy as np
import pytest

from bio.ner import features as ner_features
from bio.ner.iob import Sentence

LABELS = ["O", "B-Disease", "I-Disease"]
LABEL_MAP = {label: i for i, label in enumerate(LABELS)}


class ChunkTokenizer(object):
  """A predictable stand-in tokenizer: "▁" + 3-character chunks."""
  sp_model = None

  def __init__(self):
    self.vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}

  def tokenize(self, text):
    chunks = [text[i:i + 3] for i in range(0, len(text), 3)]
    if chunks:
      chunks[0] = "\u2581" + chunks[0]
    return chunks

  def convert_tokens_to_ids(self, tokens):
    return [self.vocab.setdefault(t, len(self.vocab)) for t in tokens]


def chunk_count(word):
  return max(1, -(-len(word) // 3))


@pytest.fixture()
def encoder():
  return ner_features.PieceEncoder(ChunkTokenizer())


def test_labels_sit_on_first_pieces(encoder):
  words = ["Identification", "of", "APC2", ",", "adenomatous", "polyposis"]
  labels = ["O", "O", "O", "O", "B-Disease", "I-Disease"]
  (feature,) = ner_features.convert_sentence(
      7, words, labels, LABEL_MAP, 24, encoder)
  tok = encoder.tokenizer
  pieces = [p for w in words for p in tok.tokenize(w)]
  expected_ids = ([tok.vocab["[CLS]"]] + [tok.vocab[p] for p in pieces] +
                  [tok.vocab["[SEP]"]])
  n = len(expected_ids)
  assert feature.input_ids == expected_ids + [0] * (24 - n)
  assert feature.input_mask == [1] * n + [0] * (24 - n)
  assert feature.segment_ids == [0] * 24
  # First pieces: 1 + cumulative piece counts of the words before.
  starts = 1 + np.cumsum([0] + [chunk_count(w) for w in words[:-1]])
  assert [i for i, m in enumerate(feature.label_mask) if m] == list(starts)
  assert [feature.label_ids[i] for i in starts] == [LABEL_MAP[l]
                                                    for l in labels]
  assert [feature.word_ids[i] for i in starts] == list(range(len(words)))
  others = set(range(24)) - set(starts)
  assert all(feature.label_ids[i] == 0 and feature.word_ids[i] == -1
             for i in others)
  assert feature.sentence_index == 7 and feature.is_real_example == 1


def test_empty_word_falls_back_to_unknown_piece(encoder):
  (feature,) = ner_features.convert_sentence(0, ["a", "", "b"], None,
                                             LABEL_MAP, 8, encoder)
  assert feature.input_ids[2] == encoder.tokenizer.vocab["[UNK]"]
  assert feature.label_mask[:5] == [0, 1, 1, 1, 0]


def _check_windows(encoder, words, max_seq_length, sentence_index=0):
  labels = [random.choice(LABELS) for _ in words]
  features = ner_features.convert_sentence(
      sentence_index, words, labels, LABEL_MAP, max_seq_length, encoder)
  tok = encoder.tokenizer
  flat = [i for w in words for i in encoder.ids(w)]
  window = max_seq_length - 2
  seen = [0] * len(words)
  for f in features:
    assert len(f.input_ids) == max_seq_length
    assert all(len(getattr(f, k)) == max_seq_length for k in
               ("input_mask", "segment_ids", "label_ids", "label_mask",
                "word_ids"))
    real = sum(f.input_mask)
    assert real <= max_seq_length and f.input_ids[0] == tok.vocab["[CLS]"]
    assert f.input_ids[real - 1] == tok.vocab["[SEP]"]
    body = f.input_ids[1:real - 1]
    # Every window is a contiguous slice of the sentence's pieces.
    assert any(flat[s:s + len(body)] == body
               for s in range(len(flat) - len(body) + 1))
    for slot, w in enumerate(f.word_ids):
      assert (w >= 0) == bool(f.label_mask[slot])
      if w >= 0:
        seen[w] += 1
        assert f.label_ids[slot] == LABEL_MAP[labels[w]]
  assert seen == [1] * len(words)
  if len(features) > 1:
    assert sum(chunk_count(w) for w in words) > window
  return features, labels


def test_windows_cover_every_word_exactly_once(encoder):
  rng = random.Random(0)
  random.seed(1)
  for max_seq_length in (3, 4, 8, 16, 64):
    for n_words in (0, 1, 2, 5, 17, 40, 150):
      words = ["".join(rng.choice("abcdefgh") for _ in
                       range(rng.randint(1, 14))) for _ in range(n_words)]
      _check_windows(encoder, words, max_seq_length)


def test_predicted_position_has_most_context(encoder):
  # One piece per word: positions and words coincide.
  words = [str(i) for i in range(300)]
  features, _ = _check_windows(encoder, words, 34)
  window = 32
  spans = ner_features.window_spans(300, window)
  assert len(features) == len(spans) > 1
  for f, (start, end) in zip(features, spans):
    for slot, w in enumerate(f.word_ids):
      if w < 0:
        continue
      assert w == start + slot - 1
      context = min(w - start, end - 1 - w)
      # Half-window stride: at least a quarter window each side, unless the
      # sentence itself ends sooner.
      assert context >= min(w, 299 - w, window // 4 - 1)


def test_word_longer_than_a_window(encoder):
  words = ["short", "x" * 300, "after", "end"]
  features, _ = _check_windows(encoder, words, 16)
  assert len(features) > 5
  owner = [f for f in features if 1 in f.word_ids]
  (f,) = owner
  # The long word's first piece carries its label.
  slot = f.word_ids.index(1)
  assert f.input_ids[slot] == encoder.tokenizer.vocab["\u2581xxx"]


def test_unknown_label_raises_unless_allowed(encoder):
  with pytest.raises(ValueError, match="B-Chemical"):
    ner_features.convert_sentence(0, ["a"], ["B-Chemical"], LABEL_MAP, 8,
                                  encoder)
  (f,) = ner_features.convert_sentence(0, ["a"], ["B-Chemical"], LABEL_MAP, 8,
                                       encoder, allow_unknown_labels=True)
  assert f.label_mask[1] == 1 and f.label_ids[1] == 0


def _perfect_predictions(features, rng):
  """Gold ids where a label sits, noise everywhere else."""
  out = []
  for f in features:
    noise = rng.randint(0, len(LABELS) - 1, size=len(f.label_ids))
    out.append(np.where(np.asarray(f.label_mask) == 1, f.label_ids, noise))
  return out


def test_long_sentence_round_trips_with_padding(encoder):
  rng = np.random.RandomState(3)
  random.seed(3)
  sentences = []
  for n in (2000, 3, 60, 1):
    words = ["".join(rng.choice(list("abcdefgh"), size=rng.randint(1, 12)))
             for _ in range(n)]
    labels = [LABELS[i] for i in rng.randint(0, 3, size=n)]
    sentences.append(Sentence(words, labels))
  features = ner_features.convert_sentences(sentences, LABEL_MAP, 64, encoder)
  padded = ner_features.pad_to_batch_multiple(features, 16, 64)
  assert len(padded) % 16 == 0 and len(padded) - len(features) < 16
  assert all(p.is_real_example == 0 and sum(p.label_mask) == 0
             for p in padded[len(features):])
  predicted = _perfect_predictions(padded, rng)
  out = ner_features.assemble_predictions(
      padded, predicted, [len(s.tokens) for s in sentences], LABELS)
  assert out == [s.labels for s in sentences]
  # Only the label positions matter: noise elsewhere changed nothing, and a
  # changed label position changes exactly one word.
  f = features[5]
  slot = f.word_ids.index(max(f.word_ids))
  predicted[5] = predicted[5].copy()
  predicted[5][slot] = (predicted[5][slot] + 1) % 3
  out2 = ner_features.assemble_predictions(
      padded, predicted, [len(s.tokens) for s in sentences], LABELS)
  diff = [(i, j) for i, s in enumerate(out) for j in range(len(s))
          if out[i][j] != out2[i][j]]
  assert diff == [(f.sentence_index, max(f.word_ids))]


def test_assemble_rejects_missing_predictions(encoder):
  features = ner_features.convert_sentence(0, ["a", "b"], None, LABEL_MAP, 8,
                                           encoder)
  with pytest.raises(ValueError, match="no prediction"):
    ner_features.assemble_predictions(features, [[0] * 8], [3], LABELS)
  with pytest.raises(ValueError, match="predictions"):
    ner_features.assemble_predictions(features, [], [2], LABELS)


def test_tfrecord_round_trip(encoder, tmp_path):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  sentences = [Sentence(["abcdefg"] * 30, ["O"] * 30),
               Sentence(["x", "y"], ["B-Disease", "I-Disease"])]
  features = ner_features.pad_to_batch_multiple(
      ner_features.convert_sentences(sentences, LABEL_MAP, 16, encoder), 4, 16)
  path = str(tmp_path / "f.tf_record")
  ner_features.write_tfrecord(features, path)
  assert os.listdir(str(tmp_path)) == ["f.tf_record"]
  input_fn = ner_features.file_based_input_fn_builder(path, 16, False, True)
  batches = []
  # Graph mode, whatever another test did to eager execution.
  with tf.Graph().as_default():
    batch = tf.data.make_one_shot_iterator(
        input_fn({"batch_size": 4})).get_next()
    with tf.Session() as sess:
      while True:
        try:
          batches.append(sess.run(batch))
        except tf.errors.OutOfRangeError:
          break
  assert len(batches) == len(features) // 4
  expected = ner_features.features_to_arrays(features)
  for key in ner_features.FEATURE_KEYS:
    got = np.concatenate([b[key] for b in batches])
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected[key])


def test_real_sentencepiece_alignment(tmp_path, ner_dir):
  from albert import tokenization  # pylint: disable=g-import-not-at-top
  from albert import train_spm  # pylint: disable=g-import-not-at-top
  from bio.ner import iob  # pylint: disable=g-import-not-at-top
  train = iob.read_iob_file(os.path.join(ner_dir, "NCBI-disease",
                                              "train.tsv"))[:600]
  model = train_spm.train_sentencepiece_from_texts(
      [" ".join(s.tokens) for s in train], str(tmp_path / "spm"),
      vocab_size=800)
  tokenizer = tokenization.FullTokenizer(None, True, model)
  enc = ner_features.PieceEncoder(tokenizer, do_lower_case=True)
  label_list = iob.get_label_list(train)
  label_map = {l: i for i, l in enumerate(label_list)}
  # One 2,000+ token sentence made of real ones, and the first 50 as is.
  words, labels = [], []
  for s in train:
    if len(words) >= 2000:
      break
    words += s.tokens
    labels += s.labels
  sentences = [Sentence(words, labels)] + train[:50]
  features = ner_features.convert_sentences(sentences, label_map, 64, enc)
  for f in features:
    for slot, w in enumerate(f.word_ids):
      if w >= 0:
        word = sentences[f.sentence_index].tokens[w]
        first = tokenizer.tokenize(tokenization.preprocess_text(word,
                                                                lower=True))
        assert f.input_ids[slot] == tokenizer.convert_tokens_to_ids(first)[0]
  predicted = _perfect_predictions(features, np.random.RandomState(0))
  out = ner_features.assemble_predictions(
      features, predicted, [len(s.tokens) for s in sentences], label_list)
  assert out == [s.labels for s in sentences]
  assert len(out[0]) >= 2000


def test_training_shuffle_order_follows_the_seed(tmp_path):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "x.tf_record")
  feats = []
  for i in range(64):
    f = ner_features.padding_feature(4)
    f.input_ids = [i, 0, 0, 0]
    feats.append(f)
  ner_features.write_tfrecord(feats, path)

  def first_batches(seed):
    with tf.Graph().as_default():
      d = ner_features.file_based_input_fn_builder(
          path, 4, is_training=True, drop_remainder=True, shuffle_buffer=64,
          seed=seed)({"batch_size": 16})
      batch = tf.data.make_one_shot_iterator(d).get_next()
      with tf.Session() as sess:
        return [sess.run(batch)["input_ids"][:, 0].tolist() for _ in range(4)]

  a, b, c = first_batches(1), first_batches(1), first_batches(2)
  assert a == b and a != c
  assert sorted(sum(a, [])) == list(range(64))  # one epoch, a permutation
