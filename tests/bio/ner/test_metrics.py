"""Tests for bio.ner.metrics against seqeval called directly and hand counts."""
import random

import pytest
from seqeval import metrics as sm
from seqeval.scheme import IOB2

from bio.ner import metrics as ner_metrics

# Gold and predicted labels where the two modes differ.
GOLD = [["B-X", "I-X", "O", "B-Y"],
        ["B-X", "O", "O"],
        ["O", "B-Y", "I-Y", "I-Y"]]
PRED = [["B-X", "I-X", "O", "B-X"],   # X right, Y typed as X
        ["I-X", "O", "O"],            # I-X: an entity for conlleval only
        ["O", "B-Y", "I-Y", "O"]]     # Y too short


def test_hand_counts():
  r = ner_metrics.evaluate(GOLD, PRED)
  # Gold mentions: X(0,0-1) Y(0,3) X(1,0) Y(2,1-3) -> 2 X, 2 Y.
  # conlleval: predicted X(0,0-1) X(0,3) X(1,0) Y(2,1-2); 2 correct.
  c = r["conlleval"]
  assert (c["overall"]["support"], c["overall"]["predicted"],
          c["overall"]["correct"]) == (4, 4, 2)
  assert c["overall"]["precision"] == pytest.approx(2 / 4)
  assert c["overall"]["recall"] == pytest.approx(2 / 4)
  assert c["per_type"]["X"]["precision"] == pytest.approx(2 / 3)
  assert c["per_type"]["X"]["recall"] == pytest.approx(2 / 2)
  assert c["per_type"]["X"]["f1"] == pytest.approx(0.8)
  assert c["per_type"]["Y"]["support"] == 2
  assert c["per_type"]["Y"]["correct"] == 0
  # strict IOB2: the stray I-X is no entity; predicted 3, correct 1.
  s = r["strict"]
  assert (s["overall"]["support"], s["overall"]["predicted"],
          s["overall"]["correct"]) == (4, 3, 1)
  assert s["overall"]["precision"] == pytest.approx(1 / 3)
  assert s["overall"]["recall"] == pytest.approx(1 / 4)
  assert s["overall"]["f1"] == pytest.approx(2 / 7)
  assert s["per_type"]["X"]["recall"] == pytest.approx(1 / 2)
  # Tokens: 11 total; wrong: (0,3), (1,0), (2,3) -> 8 right.
  assert r["token_accuracy"] == pytest.approx(8 / 11)
  assert (r["num_sentences"], r["num_tokens"]) == (3, 11)


def _seqeval_direct(gold, pred, strict):
  kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
  return (sm.precision_score(gold, pred, zero_division=0, **kwargs),
          sm.recall_score(gold, pred, zero_division=0, **kwargs),
          sm.f1_score(gold, pred, zero_division=0, **kwargs))


def _random_seqs(rng, n, types):
  """Random IOB2-ish sequences (with stray I's: conlleval and strict
  differ on them)."""
  out = []
  for _ in range(n):
    seq = []
    for _ in range(rng.randint(1, 12)):
      p = rng.random()
      if p < 0.55:
        seq.append("O")
      else:
        prefix = "B" if p < 0.8 else "I"
        seq.append(prefix if not types else
                   "%s-%s" % (prefix, rng.choice(types)))
    out.append(seq)
  return out


@pytest.mark.parametrize("types", [["Disease"], ["DNA", "RNA", "protein"],
                                   []])
def test_matches_seqeval_on_random_sequences(types):
  rng = random.Random(len(types))
  for _ in range(30):
    gold = _random_seqs(rng, 8, types)
    # Predictions: the gold with some labels changed.
    pred = [[l if rng.random() < 0.7 else rng.choice(
        ["O"] + ([p + "-" + t for p in "BI" for t in types] if types
                 else ["B", "I"])) for l in s] for s in gold]
    r = ner_metrics.evaluate(gold, pred)
    for mode, strict in (("conlleval", False), ("strict", True)):
      p, rec, f = _seqeval_direct(gold, pred, strict)
      overall = r[mode]["overall"]
      assert overall["precision"] == pytest.approx(p)
      assert overall["recall"] == pytest.approx(rec)
      assert overall["f1"] == pytest.approx(f)
      kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
      report = sm.classification_report(gold, pred, output_dict=True,
                                        zero_division=0, **kwargs)
      for etype, scores in r[mode]["per_type"].items():
        assert scores["f1"] == pytest.approx(report[etype]["f1-score"])
        assert scores["support"] == report[etype]["support"]
        # The counts agree with the rates.
        if scores["predicted"]:
          assert scores["precision"] == pytest.approx(
              scores["correct"] / scores["predicted"])
        if scores["support"]:
          assert scores["recall"] == pytest.approx(
              scores["correct"] / scores["support"])
    flat = [(g, q) for gs, ps in zip(gold, pred) for g, q in zip(gs, ps)]
    assert r["token_accuracy"] == pytest.approx(
        sum(g == q for g, q in flat) / len(flat))


def test_untyped_labels():
  r = ner_metrics.evaluate([["B", "I", "O", "B"]], [["B", "I", "O", "I"]])
  assert r["conlleval"]["overall"]["f1"] == 1.0
  assert r["strict"]["overall"]["recall"] == 0.5
  assert set(r["strict"]["per_type"]) == {"_"}


def test_no_entities_and_errors():
  r = ner_metrics.evaluate([["O", "O"]], [["O", "O"]])
  assert r["conlleval"]["overall"]["f1"] == 0.0
  assert r["conlleval"]["per_type"] == {}
  assert r["token_accuracy"] == 1.0
  with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
    ner_metrics.evaluate([["O"], ["O"]], [["O"]])
  with pytest.raises(ValueError, match="sentence 1: 2 gold labels but 1"):
    ner_metrics.evaluate([["O"], ["O", "O"]], [["O"], ["O"]])


def test_format_results():
  text = ner_metrics.format_results(ner_metrics.evaluate(GOLD, PRED))
  lines = text.splitlines()
  assert lines[0].startswith("Entity level, conlleval-compatible")
  assert lines[2].split() == ["ALL", "50.00", "50.00", "50.00", "4", "4", "2"]
  strict = lines.index(next(l for l in lines if l.startswith(
      "Entity level, strict")))
  assert lines[strict + 2].split() == ["ALL", "33.33", "25.00", "28.57", "4",
                                       "3", "1"]
  assert lines[-1] == "Token accuracy: 72.73% (11 tokens, 3 sentences)"
  four = ner_metrics.format_results(ner_metrics.evaluate(GOLD, PRED),
                                    digits=4)
  assert "28.5714" in four
