r"""Tags raw text with an exported NER SavedModel.

  python -m bio.serving.tag --saved_model=DIR --input=FILE --output=FILE \
      --format=jsonl|pubtator [--input_format=auto|text|pubmed]

Input: a plain UTF-8 file with one document (e.g. an abstract) per line, or
a PubMed XML file (gzip or plain), read with bio.corpus.pubmed. Output: JSON Lines,
one object per document ({"id", "text", "entities": [{"start", "end",
"text", "type", "score"}]}), or PubTator (`ID|t|title`, `ID|a|abstract`,
then `ID<TAB>start<TAB>end<TAB>mention<TAB>type` lines and a blank line;
offsets count in the title, a space, then the abstract, as PubTator does).
"""
import collections
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from albert import file_utils

Document = collections.namedtuple("Document", ["id", "title", "abstract"])


class TagError(ValueError):
  """Input or model that cannot be used (reported without a trace)."""


def document_text(doc):
  """The text the model sees: title, a space, abstract (PubTator's offsets)."""
  if doc.title and doc.abstract:
    return doc.title + " " + doc.abstract
  return doc.title or doc.abstract


def read_text_documents(path):
  """One document per non-empty line; its id is the line number."""
  with open(path, "rb") as f:
    for line_number, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as e:
        raise TagError("%s:%d: not valid UTF-8 (%s)" % (path, line_number, e))
      if line.strip():
        yield Document(str(line_number), line, "")


def read_pubmed_documents(path):
  """Title and abstract of every article with an abstract."""
  from bio.corpus import pubmed  # pylint: disable=g-import-not-at-top
  errors = []
  for article in pubmed.read_file(path, errors=errors):
    abstract = " ".join(text for _, text in article.sections)
    yield Document(str(article.pmid), article.title or "", abstract)
  if errors:
    raise TagError("%s: %s" % (path, "; ".join(e["reason"] for e in errors)))


def detect_format(path):
  """'pubmed' for (gzipped) XML, else 'text'."""
  if path.endswith((".xml", ".xml.gz", ".nxml")):
    return "pubmed"
  return "text"


def load_model(saved_model_dir):
  """The serving signature of an exported NER model."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
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


def format_jsonl(doc, text, entities):
  return json.dumps({"id": doc.id, "text": text, "entities": entities},
                    ensure_ascii=False) + "\n"


def format_pubtator(doc, text, entities):
  del text  # offsets already count title + " " + abstract
  lines = ["%s|t|%s" % (doc.id, doc.title), "%s|a|%s" % (doc.id, doc.abstract)]
  for e in entities:
    lines.append("\t".join([doc.id, str(e["start"]), str(e["end"]), e["text"],
                            e["type"]]))
  return "\n".join(lines) + "\n\n"


FORMATTERS = {"jsonl": format_jsonl, "pubtator": format_pubtator}


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


def tag_file(tagger, input_path, output_path, output_format="jsonl",
             input_format="auto", batch_size=16, log_every=100):
  """Tags every document of `input_path`; returns (documents, entities)."""
  check_paths(input_path, output_path)
  if input_format == "auto":
    input_format = detect_format(input_path)
  reader = (read_pubmed_documents if input_format == "pubmed"
            else read_text_documents)
  formatter = FORMATTERS[output_format]
  counts = [0, 0]
  started = time.time()
  with file_utils.atomic_file(output_path, "w") as out:
    batch = []

    def flush():
      texts = [document_text(d) for d in batch]
      outputs = tagger(texts)
      for row, (doc, text) in enumerate(zip(batch, texts)):
        entities = entities_of(outputs, row)
        out.write(formatter(doc, text, entities))
        counts[1] += len(entities)
      counts[0] += len(batch)
      if log_every and counts[0] // log_every != (counts[0] - len(batch)) \
          // log_every:
        rate = counts[0] / max(time.time() - started, 1e-9)
        logging.info("tagged %d documents (%.1f documents/s), %d entities",
                     counts[0], rate, counts[1])
      del batch[:]

    for doc in reader(input_path):
      batch.append(doc)
      if len(batch) == batch_size:
        flush()
    if batch:
      flush()
  return tuple(counts)


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("saved_model", None, "A bio.serving.export SavedModel.")
  flags.DEFINE_string("input", None, "Text (one document per line) or PubMed "
                      "XML (.xml, .xml.gz).")
  flags.DEFINE_string("output", None, "Output file.")
  flags.DEFINE_enum("format", "jsonl", sorted(FORMATTERS), "Output format.")
  flags.DEFINE_enum("input_format", "auto", ["auto", "text", "pubmed"],
                    "Input format; auto decides by the file name.")
  flags.DEFINE_integer("batch_size", 16, "Documents per model call.")


def main(_):
  logging.set_verbosity(logging.INFO)
  try:
    check_paths(FLAGS.input, FLAGS.output)  # before the slow model load
    tagger = load_model(FLAGS.saved_model)
    docs, ents = tag_file(tagger, FLAGS.input, FLAGS.output, FLAGS.format,
                          FLAGS.input_format, FLAGS.batch_size)
  except TagError as e:
    sys.stderr.write("bio.serving.tag: error: %s\n" % e)
    sys.exit(1)
  logging.info("wrote %s: %d documents, %d entities", FLAGS.output, docs,
               ents)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["saved_model", "input", "output"])
  app.run(main)
