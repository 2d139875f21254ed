r"""Where a pretraining checkpoint's attention goes: a check for attention
collapse, the way small pretraining runs here stall.

  python -m bio.experiments.attention \
      --albert_config_file=gain/albert_config.json \
      --init_checkpoint=gain/pretrain --input_file='gain/records/*.tfrecord' \
      [--max_seq_length=64] [--batches=4] [--batch_size=64] \
      [--output_file=gain/pretrain/attention.json]

Runs the encoder (no dropout) on the first --batches batches of the
pretraining records and prints, per encoder application (ALBERT shares one
layer's weights, so "application" rather than "layer") and attention head,
over all non-padding query positions:
  entropy     mean entropy of an attention row, in nats; a uniform row over
              n tokens has log(n) (printed for the mean n), a one-hot row 0;
  self        mean attention on the query token itself;
  neighbours  mean attention on the tokens just before and after it;
  special     mean attention on [CLS] and [SEP] (read off the records: the
              first token and every token with the last token's id).

A head is *collapsed* when its rows are nearly one-hot (entropy below
`COLLAPSE_ENTROPY`) on tokens that are neither the query, its neighbours
nor [CLS]/[SEP] (together under `COLLAPSE_MASS`): it copies one arbitrary
position into every token and carries no context. The tool says which heads
are. A sharp head on the neighbours (a "previous token" head) is healthy:
the runs here that left the masked-LM loss plateau had one; the runs that
stayed on it had every head of their first application collapsed (README,
section 9). --output_file also writes the numbers as JSON (`to_json`),
atomically. Exit 1 with one line for a bad flag or an unreadable
checkpoint; nothing is written.
"""
import dataclasses
import math
import sys
from typing import List, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import export_to_tfhub
from albert import file_utils
from albert import modeling
from albert import run_pretraining

COLLAPSE_ENTROPY = 0.5
COLLAPSE_MASS = 0.5


class AttentionError(Exception):
  """A user error: the message is the whole story."""


@dataclasses.dataclass(frozen=True)
class HeadStats:
  entropy: float
  self: float
  neighbours: float
  special: float

  @property
  def collapsed(self):
    return (self.entropy < COLLAPSE_ENTROPY and
            self.self + self.neighbours + self.special < COLLAPSE_MASS)


@dataclasses.dataclass(frozen=True)
class AttentionOptions:
  albert_config_file: str
  init_checkpoint: str
  input_file: str
  max_seq_length: int = 64
  batches: int = 4
  batch_size: int = 64


def special_mask(input_ids, input_mask):
  """[B, T] bool: [CLS] (each row's first token) and [SEP] (every token with
  the id of the row's last non-padding token)."""
  lengths = input_mask.sum(axis=1).astype(np.int64)
  if (lengths < 1).any():
    raise AttentionError("a record has no tokens (input_mask all 0)")
  rows = np.arange(len(input_ids))
  cls_id = input_ids[:, :1]
  sep_id = input_ids[rows, lengths - 1][:, None]
  return ((input_ids == cls_id) | (input_ids == sep_id)) & (input_mask > 0)


def row_sums(probs, input_mask, special):
  """Per head, sums over the valid query rows of a batch.

  Args:
    probs: [B, H, T, T] attention probabilities (query, key).
    input_mask: [B, T], 1 for real tokens.
    special: [B, T] bool, the [CLS]/[SEP] keys.
  Returns:
    ([H, 4] sums of entropy, self, neighbours, special; number of rows).
  """
  length = probs.shape[-1]
  plogp = np.where(probs > 0, probs * np.log(np.maximum(probs, 1e-30)), 0.0)
  entropy = -plogp.sum(-1)
  diagonal = np.diagonal(probs, axis1=-2, axis2=-1)
  neighbours = (np.diagonal(probs, offset=1, axis1=-2, axis2=-1),
                np.diagonal(probs, offset=-1, axis1=-2, axis2=-1))
  nbr = np.zeros(probs.shape[:-1])
  nbr[..., :length - 1] += neighbours[0]
  nbr[..., 1:] += neighbours[1]
  on_special = (probs * special[:, None, None, :]).sum(-1)
  valid = input_mask[:, None, :] > 0  # [B, 1, T] query rows
  stats = np.stack([entropy, diagonal, nbr, on_special], axis=-1)
  sums = (stats * valid[..., None]).sum(axis=(0, 2))
  return sums, int(input_mask.sum())


def checkpoint_stats(opts: AttentionOptions) -> Tuple[List[List[HeadStats]],
                                                       float, str]:
  """([application][head] statistics, mean log(row length), the checkpoint
  prefix read)."""
  try:
    config = modeling.AlbertConfig.from_json_file(opts.albert_config_file)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise AttentionError("--albert_config_file %s: %s"
                         % (opts.albert_config_file, e))
  checkpoint = file_utils.resolve_checkpoint(opts.init_checkpoint,
                                             error_cls=AttentionError)
  files = file_utils.expand_globs(opts.input_file, AttentionError,
                                  "--input_file")
  features = ("input_ids", "input_mask", "segment_ids")
  for path in files:
    try:
      run_pretraining.check_input_file(path, opts.max_seq_length, 1,
                                       features=features)
    except run_pretraining.PretrainingInputError as e:
      raise AttentionError("--input_file: %s" % e)
  spec = run_pretraining.name_to_features_spec(opts.max_seq_length, 1)
  spec = {k: spec[k] for k in features}
  graph = tf.Graph()
  with graph.as_default():
    data = tf.data.TFRecordDataset(files).map(
        lambda r: tf.parse_single_example(r, spec))
    batch = tf.data.make_one_shot_iterator(
        data.batch(opts.batch_size).take(opts.batches)).get_next()
    # Built for its attention_probs ops; its outputs are not needed.
    modeling.AlbertModel(
        config, is_training=False,
        input_ids=tf.cast(batch["input_ids"], tf.int32),
        input_mask=tf.cast(batch["input_mask"], tf.int32),
        token_type_ids=tf.cast(batch["segment_ids"], tf.int32))
    probs = [op.outputs[0] for op in graph.get_operations()
             if op.type == "Softmax" and op.name.endswith("attention_probs")]
    try:
      export_to_tfhub.check_checkpoint_variables(checkpoint)
    except ValueError as e:
      raise AttentionError(
          "--init_checkpoint %s does not fit --albert_config_file %s: %s"
          % (checkpoint, opts.albert_config_file, e))
    saver = tf.train.Saver(tf.global_variables())
    sums, rows, log_len, seqs = None, 0, 0.0, 0
    with tf.Session(graph=graph) as sess:
      saver.restore(sess, checkpoint)
      while True:
        try:
          values, ids, mask = sess.run(
              [probs, batch["input_ids"], batch["input_mask"]])
        except tf.errors.OutOfRangeError:
          break
        except tf.errors.InvalidArgumentError as e:  # a later record
          raise AttentionError(
              "--input_file: a record does not fit --max_seq_length=%d (%s)"
              % (opts.max_seq_length, e.message.strip().splitlines()[-1]))
        special = special_mask(ids, mask)
        per_app = [row_sums(p, mask, special) for p in values]
        batch_sums = np.stack([s for s, _ in per_app])
        sums = batch_sums if sums is None else sums + batch_sums
        rows += per_app[0][1]
        log_len += float(np.log(mask.sum(axis=1)).sum())
        seqs += len(ids)
  if not seqs:
    raise AttentionError("--input_file %s: no records" % opts.input_file)
  means = sums / rows
  return ([[HeadStats(*map(float, head)) for head in app_means]
           for app_means in means], log_len / seqs, checkpoint)


def collapsed_heads(stats):
  """[(application, head)] of the collapsed heads."""
  return [(a, h) for a, heads in enumerate(stats)
          for h, s in enumerate(heads) if s.collapsed]


def verdict(stats):
  """One line: how many heads collapsed, and which."""
  collapsed = collapsed_heads(stats)
  if not collapsed:
    return "no head collapsed."
  return "%d of %d heads collapsed (application,head): %s" % (
      len(collapsed), sum(len(h) for h in stats),
      " ".join("%d,%d" % c for c in collapsed))


def to_json(stats, mean_log_length, checkpoint):
  return {
      "checkpoint": checkpoint,
      "uniform_entropy": mean_log_length,
      "heads": [[dataclasses.asdict(s) for s in heads] for heads in stats],
      "collapsed": [list(c) for c in collapsed_heads(stats)],
      "verdict": verdict(stats)}


def report(stats, mean_log_length):
  """A markdown table of `stats`, then a verdict line."""
  lines = ["| application | head | entropy | self | neighbours | [CLS]/[SEP] "
           "| |", "|---|---|---|---|---|---|---|"]
  for a, heads in enumerate(stats):
    for h, s in enumerate(heads):
      lines.append("| %d | %d | %.2f | %.2f | %.2f | %.2f | %s |" % (
          a, h, s.entropy, s.self, s.neighbours, s.special,
          "collapsed" if s.collapsed else ""))
  lines.append("")
  lines.append("uniform rows would have entropy %.2f (mean length %.1f)."
               % (mean_log_length, math.exp(mean_log_length)))
  lines.append(verdict(stats))
  return "\n".join(lines)


def define_flags():
  common_flags.define_model_flags(init_checkpoint_help=(
      "The checkpoint to inspect: a prefix or a directory (its latest)."))
  flags.DEFINE_string("input_file", None,
                      "Pretraining TFRecords (comma-separated globs).")
  common_flags.define_max_seq_length_flag(
      64, "The records' sequence length.")
  flags.DEFINE_integer("batches", 4, "Batches to read.", lower_bound=1)
  flags.DEFINE_integer("batch_size", 64, "Records per batch.", lower_bound=1)
  flags.DEFINE_string("output_file", None,
                      "Also write the numbers here as JSON.")
  for name in ("albert_config_file", "init_checkpoint", "input_file"):
    flags.mark_flag_as_required(name)


def main(argv):
  del argv
  f = flags.FLAGS
  opts = AttentionOptions(
      albert_config_file=f.albert_config_file,
      init_checkpoint=f.init_checkpoint, input_file=f.input_file,
      max_seq_length=f.max_seq_length, batches=f.batches,
      batch_size=f.batch_size)
  try:
    stats, mean_log_length, checkpoint = checkpoint_stats(opts)
  except AttentionError as e:
    sys.exit("bio.experiments.attention: %s" % e)
  if f.output_file:
    file_utils.atomic_write_json(
        f.output_file, to_json(stats, mean_log_length, checkpoint))
  print(report(stats, mean_log_length))


if __name__ == "__main__":
  define_flags()
  app.run(main)
