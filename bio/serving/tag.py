r"""Tags documents with an exported NER SavedModel.

  python -m bio.serving.tag --saved_model=DIR --input=FILE --output=FILE \
      --format=jsonl|pubtator|bioc|bioc_json \
      [--input_format=auto|text|pubmed|pmc|pubtator|bioc|bioc_json] \
      [--resume] [--strict]

Input (bio.serving.documents, streamed): text with one document per line,
PubMed XML (.xml, .xml.gz), PMC JATS (.nxml), PubTator, BioC XML or BioC
JSON; `auto` decides by the name and the first bytes. Each title, abstract
and paragraph is a passage at its document offset; the model sees the
passages at their offsets (`documents.document_text`).

Output (bio.serving.outputs): JSON Lines ({"id", "text", "entities":
[{"start", "end", "text", "type", "score"}]}), PubTator (`ID|t|title`,
`ID|a|abstract`, annotation lines, a blank line; offsets over title + " " +
abstract), BioC XML or BioC JSON (one passage per title/abstract/paragraph;
annotations with type, score, location and text). Annotations the input
already had are kept; new ones get distinct ids. Offsets are Unicode code
points. The output appears atomically (temporary name, then rename);
--resume writes it in parts so that a killed run can be re-run and skip
what is done, giving the same bytes.

A malformed document is logged (file, document id, reason) and skipped; the
run goes on and exits with status 1 (--strict stops at the first). The
progress line gives documents/s, words/s and an ETA from the share of the
input read.

Speed: the input is read and parsed in a background thread while the model
runs. A model call takes up to --batch_size documents and, with
--batch_tokens, up to that many words; an export of issue 12 or later sorts
the windows of a call by length and pads each sub-batch only to its
longest window, so large calls of mixed lengths cost little extra.
--intra_op_threads / --inter_op_threads set TensorFlow's thread pools (0:
its defaults, one thread per core).
"""
import itertools
import os
import queue
import sys
import threading
import time

from absl import app
from absl import flags
from absl import logging

from bio.serving import documents
from bio.serving import outputs as writers

class TagError(documents.InputError):
  """Input or model that cannot be used (reported without a trace)."""


document_text = documents.document_text


def good_documents(input_path, input_format="auto", problems=None,
                   strict=False, progress=None):
  """The input's documents; a malformed one is logged (file, document id,
  reason), appended to `problems` and skipped, or with `strict` stops the
  run (TagError)."""
  problems = problems if problems is not None else []
  for item in documents.read_documents(input_path, input_format, progress):
    if isinstance(item, documents.BadDocument):
      message = "%s: document %s: %s" % item
      if strict:
        raise TagError(message + " (--strict: stopped)")
      logging.warning("skipped %s", message)
      problems.append(item)
      continue
    yield item


def load_model(saved_model_dir, intra_op_threads=0, inter_op_threads=0):
  """The serving signature of an exported NER model.

  Thread counts (0: TensorFlow's default, one per core) apply to the whole
  process and only before TensorFlow first runs anything.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
  try:
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
  except RuntimeError as e:  # TensorFlow already running: keep its pools
    logging.warning("thread counts not applied: %s", e)
  if not os.path.isdir(saved_model_dir):
    raise TagError("--saved_model %s does not exist (or is not a "
                   "directory)" % saved_model_dir)
  if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
    raise TagError("%s is not a SavedModel (no saved_model.pb)" %
                   saved_model_dir)
  try:
    loaded = tf.saved_model.load(saved_model_dir)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise TagError("--saved_model %s cannot be loaded (%s): export it again "
                   "with bio.serving.export" % (
                       saved_model_dir, getattr(e, "message", e))) from e
  serve = loaded.signatures.get("serving_default")
  if serve is None or "text" not in serve.structured_input_signature[1]:
    raise TagError("%s is not a NER export (no serving_default taking "
                   "`text`)" % saved_model_dir)

  def tag(texts):
    out = serve(text=tf.constant(texts, dtype=tf.string))
    return {k: v.numpy() for k, v in out.items()}

  tag.keepalive = loaded
  return tag


def entities_of(outputs, row):
  """Entities of one row of the serving outputs, as dicts."""
  found = []
  for j in range(int(outputs["num_entities"][row])):
    found.append({
        "start": int(outputs["starts"][row][j]),
        "end": int(outputs["ends"][row][j]),
        "text": outputs["texts"][row][j].decode("utf-8"),
        "type": outputs["types"][row][j].decode("utf-8"),
        "score": round(float(outputs["scores"][row][j]), 4),
    })
  return found


FORMATTERS = writers.FORMATS


def check_paths(input_path, output_path):
  """Raises TagError for a missing input, an output whose directory does
  not exist (not created: it is most often a typo), or an output that is
  the input."""
  if not os.path.exists(input_path) or os.path.isdir(input_path):
    raise TagError("--input %s does not exist (or is a directory)"
                   % input_path)
  parent = os.path.dirname(os.path.abspath(output_path))
  if not os.path.isdir(parent):
    raise TagError("--output %s: directory %s does not exist (create it "
                   "first)" % (output_path, parent))
  if os.path.exists(output_path) and os.path.samefile(input_path,
                                                      output_path):
    raise TagError("--output %s is the --input file: choose another output"
                   % output_path)


def batches(docs, batch_size, batch_tokens=0):
  """Lists of at most `batch_size` documents and, with `batch_tokens`, at
  most that many words (whitespace-separated, a cheap estimate of the
  model's pieces) unless one document alone has more."""
  batch, words = [], 0
  for doc in docs:
    count = len(document_text(doc).split()) if batch_tokens else 0
    if batch and (len(batch) >= batch_size or
                  0 < batch_tokens < words + count):
      yield batch
      batch, words = [], 0
    batch.append(doc)
    words += count
  if batch:
    yield batch


def prefetch(items, depth=2):
  """Iterates `items` in a background thread, up to `depth` ahead, so that
  reading and parsing the input overlap the model calls (which release the
  GIL). An exception of the thread is raised here, in order."""
  slots = queue.Queue(depth)
  stop = threading.Event()

  def put(entry):
    while not stop.is_set():
      try:
        slots.put(entry, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def fill():
    try:
      for item in items:
        if not put((True, item)):
          return
      put((False, None))
    except BaseException as e:  # pylint: disable=broad-except
      put((False, e))

  thread = threading.Thread(target=fill, name="tag-reader", daemon=True)
  thread.start()
  try:
    while True:
      more, value = slots.get()
      if not more:
        if value is not None:
          raise value
        return
      yield value
  finally:
    stop.set()
    thread.join(timeout=10)


def tag_file(tagger, input_path, output_path, output_format="jsonl",
             input_format="auto", batch_size=16, log_every=100,
             resume=False, strict=False, problems=None, run=None,
             part_documents=1000, batch_tokens=0):
  """Tags every document of `input_path`; returns (documents, entities).

  Documents are read in a background thread while the model runs, and
  tagged in `batches` of `batch_size` documents / `batch_tokens` words.

  Malformed documents are skipped into `problems` (a list; --strict stops
  instead). With `resume`, the output is written in parts and the documents
  of the parts a killed run left are skipped (outputs.OutputFile); `run`
  describes the run (model, ...) so that parts of another are refused.
  """
  check_paths(input_path, output_path)
  if input_format == "auto":
    input_format = documents.detect_format(input_path)
  problems = problems if problems is not None else []
  progress = documents.Progress(input_path)
  reader = good_documents(input_path, input_format, problems, strict,
                          progress)
  counts = [0, 0, 0]  # documents, entities, words
  started = time.time()
  run = dict(run or {}, batch_size=batch_size, batch_tokens=batch_tokens,
             input_format=input_format,
             **_input_identity(input_path))
  with writers.OutputFile(output_path, output_format,
                          writers.collection_info(input_path),
                          resume=resume, run=run,
                          part_docs=part_documents) as out:
    def flush(batch):
      texts = [document_text(d) for d in batch]
      outputs = tagger(texts)
      for row, (doc, text) in enumerate(zip(batch, texts)):
        entities = entities_of(outputs, row)
        counts[1] += len(out.write(doc, text, entities))
      counts[0] += len(batch)
      counts[2] += sum(len(t.split()) for t in texts)
      out.checkpoint()
      if log_every and counts[0] // log_every != (counts[0] - len(batch)) \
          // log_every:
        seconds = max(time.time() - started, 1e-9)
        logging.info("tagged %d documents (%.1f documents/s, %.0f words/s), "
                     "%d entities%s", counts[0], counts[0] / seconds,
                     counts[2] / seconds, counts[1], _eta(progress, started))

    if out.done:
      logging.info("--resume: %d documents already in %s, skipped",
                   out.done, writers.parts_dir(output_path))
    todo = itertools.islice(reader, out.done, None)
    for batch in prefetch(batches(todo, batch_size, batch_tokens)):
      flush(batch)
    if problems and not counts[0] + out.done:
      raise TagError("%s: no document could be read (%s)" % (
          input_path, problems[0].reason))
  return counts[0], counts[1]


def _input_identity(input_path):
  """What tells a resumed run that the input is the same file."""
  stat = os.stat(input_path)
  return {"input": os.path.abspath(input_path), "input_size": stat.st_size,
          "input_mtime_ns": stat.st_mtime_ns}


def _eta(progress, started):
  """', 42% of the input, ETA 3m10s' from the read share of the file."""
  fraction = progress.fraction()
  if not fraction:
    return ""
  left = (time.time() - started) * (1 - fraction) / fraction
  return ", %d%% of the input, ETA %dm%02ds" % (100 * fraction, left // 60,
                                                left % 60)


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("saved_model", None, "A bio.serving.export SavedModel.")
  flags.DEFINE_string("input", None, "Text (one document per line), PubMed "
                      "XML (.xml, .xml.gz), PMC JATS (.nxml), PubTator, BioC "
                      "XML or BioC JSON.")
  flags.DEFINE_string("output", None, "Output file.")
  flags.DEFINE_enum("format", "jsonl", sorted(FORMATTERS), "Output format.")
  flags.DEFINE_enum("input_format", "auto", ["auto"] + list(documents.FORMATS),
                    "Input format; auto decides by the name and first bytes.")
  flags.DEFINE_bool("resume", False, "Write the output in parts (hidden "
                    "directory beside it); a re-run skips the documents of "
                    "the parts a killed run left.")
  flags.DEFINE_integer("part_documents", 1000, "With --resume: documents "
                       "per part (a part also ends after a minute).",
                       lower_bound=1)
  flags.DEFINE_bool("strict", False, "Stop at the first malformed document "
                    "(default: report it, skip it, go on; exit status 1).")
  flags.DEFINE_integer("batch_size", 16, "Documents per model call (at "
                       "most).", lower_bound=1)
  flags.DEFINE_integer("batch_tokens", 0, "Words per model call (at most, "
                       "unless one document has more; 0: no limit). The "
                       "export pads sub-batches of similar length, so large "
                       "batches of mixed lengths are cheap.", lower_bound=0)
  flags.DEFINE_integer("intra_op_threads", 0, "Threads inside one op (0: "
                       "one per core).", lower_bound=0)
  flags.DEFINE_integer("inter_op_threads", 0, "Ops run at once (0: "
                       "TensorFlow's default).", lower_bound=0)


def main(_):
  logging.set_verbosity(logging.INFO)
  try:
    check_paths(FLAGS.input, FLAGS.output)  # before the slow model load
    tagger = load_model(FLAGS.saved_model, FLAGS.intra_op_threads,
                        FLAGS.inter_op_threads)
    problems = []
    docs, ents = tag_file(
        tagger, FLAGS.input, FLAGS.output, FLAGS.format, FLAGS.input_format,
        FLAGS.batch_size, resume=FLAGS.resume, strict=FLAGS.strict,
        problems=problems, part_documents=FLAGS.part_documents,
        batch_tokens=FLAGS.batch_tokens, run={"saved_model": os.path.abspath(FLAGS.saved_model)})
  except documents.InputError as e:
    sys.stderr.write("bio.serving.tag: error: %s\n" % e)
    sys.exit(1)
  logging.info("wrote %s: %d documents, %d entities", FLAGS.output, docs,
               ents)
  if problems:
    sys.stderr.write("bio.serving.tag: %d malformed documents skipped (see "
                     "the warnings above)\n" % len(problems))
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["saved_model", "input", "output"])
  app.run(main)
