"""Builders shared by the tagging and Beam tests and bench/bench_tag.py: a
tiny random-weight NER run directory and its SavedModel (ALBERT tiny, a
1000-piece SentencePiece model, a classifier with large random weights so
that many words get entity labels), and a caching wrapper of the real
tagger. What the model tags is meaningless; the tests check where the
entities go, not whether they are right. Also independent readers and a
writer of the NER files (token<TAB>label data, run_ner.py's predictions).
A plain module, not a conftest, so that tests and benchmarks can import
it."""
import json
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY_CONFIG = os.path.join(ROOT, "albert", "configs", "albert_tiny.json")
LABELS = ["O", "B-Chemical", "B-Disease", "I-Chemical", "I-Disease"]


def read_blocks(path):
  """[(tokens, labels)] of a token<TAB>label file, parsed independently."""
  blocks, tokens, labels = [], [], []
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.rstrip("\n")
      if not line.strip():
        if tokens:
          blocks.append((tokens, labels))
        tokens, labels = [], []
        continue
      token, label = line.split("\t")
      tokens.append(token)
      labels.append(label)
  if tokens:
    blocks.append((tokens, labels))
  return blocks


def write_blocks(path, blocks):
  with open(path, "w", encoding="utf-8") as f:
    for tokens, labels in blocks:
      for token, label in zip(tokens, labels):
        f.write("%s\t%s\n" % (token, label))
      f.write("\n")


def write_ner_slice(out_dir, dataset_dir, sizes):
  """A small dataset: the first sizes[name] sentences of each file name
  ("train.tsv", ...) of `dataset_dir`, written to `out_dir`."""
  for name, n in sizes.items():
    write_blocks(os.path.join(out_dir, name),
                 read_blocks(os.path.join(dataset_dir, name))[:n])


def write_ensemble_member(run_dir, spm_model_file, data_dir, seed, crf=True,
                          labels=LABELS, max_seq_length=64):
  """A random run directory (write_random_ner_run) on the data in
  `data_dir`, as bio.ner.ensemble reads its members."""
  return write_random_ner_run(
      run_dir, spm_model_file, labels=labels, max_seq_length=max_seq_length,
      seed=seed, crf=crf, data_dir=data_dir, dataset=None,
      collapse_types=False, settings={"crf": crf})


def read_predictions(path):
  sentences, current = [], []
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.rstrip("\n")
      if not line:
        sentences.append(current)
        current = []
        continue
      current.append(tuple(line.rsplit(" ", 2)))
  assert not current, "file must end with a blank line"
  return sentences


def window_probabilities(checkpoint, arrays, num_labels,
                         config_file=TINY_CONFIG):
  """Label probabilities [N, S, num_labels] of feature arrays (input_ids,
  input_mask) under a NER checkpoint, computed by a plain session."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from albert import modeling  # pylint: disable=g-import-not-at-top
  from bio.ner import model as ner_model  # pylint: disable=g-import-not-at-top
  config = modeling.AlbertConfig.from_json_file(config_file)
  seq = arrays["input_ids"].shape[1]
  with tf.Graph().as_default():
    ids = tf.placeholder(tf.int32, [None, seq])
    mask = tf.placeholder(tf.int32, [None, seq])
    model = modeling.AlbertModel(config, False, ids, mask)
    probs = tf.nn.softmax(ner_model.token_classifier(
        model.get_sequence_output(), num_labels, False))
    with tf.Session() as sess:
      tf.train.Saver().restore(sess, checkpoint)
      return sess.run(probs, {ids: arrays["input_ids"],
                              mask: arrays["input_mask"]})


def write_random_ner_run(run_dir, spm_model_file, labels=LABELS,
                         max_seq_length=64, step=1, seed=3, crf=False,
                         **recorded):
  """Writes a run_ner.py-style run directory holding a random 'fine-tuned'
  tiny model (a big classifier scale so that labels vary and argmax never
  hinges on float noise) with global_step `step`, with random CRF scores
  too when `crf`; `recorded` adds to run_config.json. Returns `run_dir`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from albert import modeling  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from bio.ner import model as ner_model
  from bio.ner import run_dir as run_files
  # pylint: enable=g-import-not-at-top
  os.makedirs(os.path.join(run_dir, "best"))
  config = modeling.AlbertConfig.from_json_file(TINY_CONFIG)
  checkpoint = "best/model.ckpt-%d" % step
  with tf.Graph().as_default():
    tf.set_random_seed(seed)  # the same weights in every run
    ids = tf.placeholder(tf.int32, [None, None])
    model = modeling.AlbertModel(config, False, ids)
    ner_model.token_classifier(model.get_sequence_output(), len(labels),
                               False)
    with tf.variable_scope("ner", reuse=True):
      weights = tf.get_variable("output_weights")
    crf_params = ()
    if crf:
      from bio.ner import crf as ner_crf  # pylint: disable=g-import-not-at-top
      with tf.variable_scope("ner"):
        crf_params = ner_crf.create_params(len(labels))
    global_step = tf.train.get_or_create_global_step()
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      rng = np.random.RandomState(seed)
      sess.run(weights.assign(rng.normal(0, 3.0, weights.shape.as_list())))
      for var in crf_params:
        sess.run(var.assign(rng.normal(0, 2.0, var.shape.as_list())))
      sess.run(global_step.assign(step))
      tf.train.Saver().save(sess, os.path.join(run_dir, checkpoint))
  run_config = {"albert_config_file": TINY_CONFIG,
                "spm_model_file": spm_model_file, "do_lower_case": True,
                "max_seq_length": max_seq_length}
  run_config.update(recorded)
  files = {run_files.LABEL_MAP_FILE: {l: i for i, l in enumerate(labels)},
           run_files.RUN_CONFIG_FILE: run_config}
  for name, obj in files.items():
    with open(os.path.join(run_dir, name), "w") as f:
      json.dump(obj, f)
  with open(os.path.join(run_dir, run_files.BEST_CHECKPOINT_FILE), "w") as f:
    f.write(checkpoint + "\n")
  return run_dir


def build_tiny_ner_export(work_dir, spm_model_file, max_seq_length=64):
  """Writes a random run directory and exports it; returns the SavedModel
  directory."""
  from bio.serving import export  # pylint: disable=g-import-not-at-top
  run_dir = write_random_ner_run(os.path.join(work_dir, "ner_run"),
                                 spm_model_file,
                                 max_seq_length=max_seq_length)
  export_dir = os.path.join(work_dir, "export")
  export.export_ner(run_dir, export_dir)
  return export_dir


class CachedTagger(object):
  """The real tagger, called once per distinct text; returns the serving
  outputs (same keys and padding) for a batch."""

  def __init__(self, tagger):
    self._tagger = tagger
    self._cache = {}
    self.calls = 0

  def __call__(self, texts):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from bio.serving import tag  # pylint: disable=g-import-not-at-top
    todo = sorted({t for t in texts if t not in self._cache})
    if todo:
      self.calls += 1
      out = self._tagger(todo)
      for row, text in enumerate(todo):
        self._cache[text] = tag.entities_of(out, row)
    rows = [self._cache[t] for t in texts]
    width = max([len(r) for r in rows] + [1])
    pad = lambda key, fill: [[e[key] for e in r] + [fill] * (width - len(r))
                             for r in rows]
    return {"num_entities": np.array([len(r) for r in rows]),
            "starts": np.array(pad("start", -1)),
            "ends": np.array(pad("end", -1)),
            "scores": np.array(pad("score", 0.0)),
            "types": [[t.encode() for t in r] for r in pad("type", "")],
            "texts": [[t.encode() for t in r] for r in pad("text", "")]}
