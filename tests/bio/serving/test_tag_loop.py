"""bio.serving.tag's tagging loop: batches, the reader thread, outputs.

A fake tagger stands in for the model (it marks the first word of every
text as an entity), so the loop is checked without TensorFlow.
"""
import threading

import pytest

from bio.serving import documents
from bio.serving import tag


def _doc(i, words):
  return documents.new_document(i, [" ".join(["w%d" % i] * words)],
                                ["title"])


def _first_word_tagger(calls):
  def tagger(texts):
    calls.append(list(texts))
    return {
        "num_entities": [1] * len(texts),
        "starts": [[0]] * len(texts),
        "ends": [[len(t.split()[0])] for t in texts],
        "texts": [[t.split()[0].encode()] for t in texts],
        "types": [[b"Disease"]] * len(texts),
        "scores": [[0.5]] * len(texts),
    }
  return tagger


def test_batches_by_documents_and_words():
  docs = [_doc(i, n) for i, n in enumerate([3, 3, 10, 1, 1, 1, 30, 2])]
  sizes = lambda batches: [[int(d.id) for d in b] for b in batches]
  assert sizes(tag.batches(docs, 3)) == [[0, 1, 2], [3, 4, 5], [6, 7]]
  # At most 8 words a batch; a longer document is a batch of its own.
  assert sizes(tag.batches(docs, 3, batch_tokens=8)) == [
      [0, 1], [2], [3, 4, 5], [6], [7]]
  assert list(tag.batches([], 4, 8)) == []


def test_prefetch_reads_ahead_in_another_thread_and_keeps_order():
  readers = []

  def items():
    for i in range(50):
      readers.append(threading.current_thread().name)
      yield i

  assert list(tag.prefetch(items(), depth=3)) == list(range(50))
  assert set(readers) == {"tag-reader"}


def test_prefetch_raises_the_reader_error_after_the_items_before_it():
  def items():
    yield 1
    yield 2
    raise tag.TagError("bad input")

  got = []
  with pytest.raises(tag.TagError, match="bad input"):
    for item in tag.prefetch(items()):
      got.append(item)
  assert got == [1, 2]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
  def endless():
    i = 0
    while True:
      yield i
      i += 1

  before = threading.active_count()
  stream = tag.prefetch(endless(), depth=2)
  assert next(stream) == 0
  stream.close()
  assert threading.active_count() == before


def test_token_batches_write_what_single_documents_write(tmp_path):
  source = tmp_path / "in.txt"
  source.write_text("".join(" ".join(["word%d" % i] * (i % 7 + 1)) + "\n"
                            for i in range(40)))
  outputs = {}
  for name, kwargs in (("one", dict(batch_size=1)),
                       ("tokens", dict(batch_size=64, batch_tokens=20))):
    calls = []
    out = tmp_path / (name + ".jsonl")
    assert tag.tag_file(_first_word_tagger(calls), str(source), str(out),
                        **kwargs) == (40, 40)
    outputs[name] = out.read_text()
    if name == "tokens":
      assert len(calls) > 1
      assert all(sum(len(t.split()) for t in call) <= 20 for call in calls)
  assert outputs["one"] == outputs["tokens"]
