"""Entity-level and token-level NER scores, computed with seqeval.

Two entity-level modes are reported, because published BioNER numbers use
either:
- "conlleval": seqeval's default mode, compatible with conlleval.pl (an I-X
  that does not continue an X entity starts one, as in IOB1);
- "strict": seqeval's strict mode with the IOB2 scheme (an entity must
  start with B-X; a stray I-X is not an entity).
Both give micro-averaged precision / recall / F1 over all mentions plus the
same per entity type. Untyped labels (B/I/O) appear as type "_" (seqeval's
name).
"""
import warnings

from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2
from seqeval.scheme import Entities

MODES = ("conlleval", "strict")


def _check(true_seqs, pred_seqs):
  true_seqs = [list(s) for s in true_seqs]
  pred_seqs = [list(s) for s in pred_seqs]
  if len(true_seqs) != len(pred_seqs):
    raise ValueError("%d gold sentences but %d predicted" %
                     (len(true_seqs), len(pred_seqs)))
  for i, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
    if len(t) != len(p):
      raise ValueError("sentence %d: %d gold labels but %d predicted" %
                       (i, len(t), len(p)))
  return true_seqs, pred_seqs


def _entities(seqs, mode):
  """The set of (sentence, type, start, end) mentions under `mode`."""
  if mode == "strict":
    return {e.to_tuple() for sent in Entities(seqs, IOB2).entities
            for e in sent}
  out = set()
  for i, seq in enumerate(seqs):
    for etype, start, end in get_entities(seq):
      out.add((i, etype, start, end))
  return out


def _scores(true_seqs, pred_seqs, mode):
  """{"overall": {...}, "per_type": {type: {...}}} for one mode."""
  kwargs = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
  with warnings.catch_warnings():
    # Empty types give NaN macro averages (unused here) and numpy warnings.
    warnings.simplefilter("ignore", RuntimeWarning)
    report = classification_report(true_seqs, pred_seqs, output_dict=True,
                                   zero_division=0, **kwargs)
  gold = _entities(true_seqs, mode)
  pred = _entities(pred_seqs, mode)
  correct = gold & pred

  def counts(etype=None):
    def n(mentions):
      return sum(1 for m in mentions if etype is None or m[1] == etype)
    return {"support": n(gold), "predicted": n(pred), "correct": n(correct)}

  def row(entry, etype=None):
    out = {"precision": float(entry["precision"]),
           "recall": float(entry["recall"]),
           "f1": float(entry["f1-score"])}
    out.update(counts(etype))
    return out

  per_type = {}
  for key, entry in report.items():
    if key not in ("micro avg", "macro avg", "weighted avg"):
      per_type[key] = row(entry, key)
  return {"overall": row(report["micro avg"]), "per_type": per_type}


def evaluate(true_seqs, pred_seqs):
  """Scores predicted label sequences against gold ones.

  Args:
    true_seqs: list of gold label sequences (one per sentence), IOB2.
    pred_seqs: list of predicted label sequences, same lengths.

  Returns:
    {"conlleval": mode_scores, "strict": mode_scores,
     "token_accuracy": float, "num_sentences": int, "num_tokens": int}
    where mode_scores = {"overall": scores, "per_type": {type: scores}} and
    scores = {"precision", "recall", "f1" (fractions in [0, 1]),
              "support" (gold mentions), "predicted", "correct"}.
  Raises:
    ValueError: different numbers of sentences or of labels in a sentence,
      or (strict mode) labels outside IOB2.
  """
  true_seqs, pred_seqs = _check(true_seqs, pred_seqs)
  num_tokens = sum(len(s) for s in true_seqs)
  right = sum(t == p for ts, ps in zip(true_seqs, pred_seqs)
              for t, p in zip(ts, ps))
  results = {mode: _scores(true_seqs, pred_seqs, mode) for mode in MODES}
  results["token_accuracy"] = right / num_tokens if num_tokens else 0.0
  results["num_sentences"] = len(true_seqs)
  results["num_tokens"] = num_tokens
  return results


_TITLES = {
    "conlleval": "Entity level, conlleval-compatible (seqeval default mode)",
    "strict": "Entity level, strict IOB2 (seqeval mode='strict', "
              "scheme=IOB2)",
}


def format_results(results, digits=2):
  """A plain-text report of `evaluate`'s output; P/R/F1 in percent."""
  width = 5 + digits

  def line(name, s):
    return "  %-12s %*.*f %*.*f %*.*f %8d %9d %8d" % (
        name, width, digits, 100 * s["precision"], width, digits,
        100 * s["recall"], width, digits, 100 * s["f1"], s["support"],
        s["predicted"], s["correct"])

  out = []
  for mode in MODES:
    out.append(_TITLES[mode])
    out.append("  %-12s %*s %*s %*s %8s %9s %8s" % (
        "type", width, "P", width, "R", width, "F1", "gold", "predicted",
        "correct"))
    out.append(line("ALL", results[mode]["overall"]))
    for etype in sorted(results[mode]["per_type"]):
      out.append(line(etype, results[mode]["per_type"][etype]))
    out.append("")
  out.append("Token accuracy: %.*f%% (%d tokens, %d sentences)" % (
      digits, 100 * results["token_accuracy"], results["num_tokens"],
      results["num_sentences"]))
  return "\n".join(out) + "\n"
