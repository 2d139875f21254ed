r"""PubMed / PMC Open Access -> sharded pretraining text, one sentence per line.

  python -m bio.corpus.prepare --source=pubmed \
      --input='baseline/*.xml.gz,updatefiles/*.xml.gz' \
      --output_dir=corpus/pubmed --num_workers=8

Every document goes through the BioALBERT cleaning rules (`bio.text.clean`)
and the sentence splitter (`bio.text.sentences`); shards, the manifest and
resuming are `bio.corpus.shards`. Work is parallel over input files. A file or
record that cannot be read is reported (name and reason), counted in the
manifest, and the run goes on; with --strict the exit status is then 3.

PubMed runs take two passes when --pubmed_dedup is on (the default): a cheap
index of PMIDs and DeleteCitations over all inputs, saved as
`pubmed_plan.npz`, then the extraction, which keeps each PMID once (see
`bio.corpus.pubmed`). For many machines, build the plan once (--plan_only), then
give every host the same --input, --pubmed_plan and --num_hosts, and its own
--host_index.
"""
import collections
import glob
import hashlib
import io
import json
import multiprocessing
import os
import queue
import re
import sys
import time
import zipfile

from absl import app
from absl import flags
from absl import logging
import numpy as np

from albert import file_utils
from bio.text import clean
from bio.corpus import pmc
from bio.corpus import pubmed
from bio.text import sentences
from bio.corpus import shards

# Bump when a change to the extraction or cleaning changes the output text,
# so that a re-run redoes units written by an older version.
OUTPUT_VERSION = 1
PLAN_FILE = "pubmed_plan.npz"
_REASONS = ("superseded", "deleted")

FLAGS = flags.FLAGS


def define_corpus_flags(flag_values=FLAGS):
  """The flags of what to read and write, shared with bio.beam.prepare_corpus."""
  kw = {"flag_values": flag_values}
  flags.DEFINE_enum("source", None, ["pubmed", "pmc"],
                    "Input kind: PubMed/MEDLINE XML or PMC OA articles.", **kw)
  flags.DEFINE_string(
      "input", None,
      "Comma-separated globs (** allowed) or directories of input files "
      "(with Beam also gs://...).", **kw)
  flags.DEFINE_string("output_dir", None,
                      "Where shards and manifest go (with Beam also "
                      "gs://...).", **kw)
  flags.DEFINE_integer("shard_docs", 0,
                       "Documents per shard at most (0: no limit).", **kw)
  flags.DEFINE_integer("shard_bytes", 64 << 20,
                       "Bytes per shard at most (0: no limit).", **kw)
  flags.DEFINE_integer("min_line_chars", clean.MIN_LINE_CHARS,
                       "Lines shorter than this are dropped (paper: 20).",
                       **kw)
  flags.DEFINE_bool("pubmed_abstract_labels", False,
                    "Write structured-abstract labels as 'LABEL: text'.",
                    **kw)
  flags.DEFINE_bool("pubmed_dedup", True,
                    "Apply update semantics: each PMID once, at its last "
                    "version; a later DeleteCitation removes it.", **kw)
  flags.DEFINE_bool("pmc_captions", False,
                    "PMC: include figure and table captions.", **kw)
  flags.DEFINE_bool("pmc_section_titles", False,
                    "PMC: include section titles as lines.", **kw)
  flags.DEFINE_bool("pmc_txt_front", False,
                    "PMC .txt: also take the '==== Front' part.", **kw)
  flags.DEFINE_integer("unit_bytes", 128 << 20,
                       "Loose PMC files are grouped into units of about "
                       "this many input bytes.", **kw)
  flags.DEFINE_bool("strict", False,
                    "Exit with status 3 if any input could not be read.",
                    **kw)


def define_flags(flag_values=FLAGS):
  """Defines the CLI flags (on `flag_values`, the global FLAGS by default)."""
  define_corpus_flags(flag_values)
  kw = {"flag_values": flag_values}
  flags.DEFINE_integer("num_workers", 1, "Worker processes.", **kw)
  flags.DEFINE_string("pubmed_plan", None,
                      "Dedup plan to use, or to write with --plan_only "
                      "(default: <output_dir>/%s)." % PLAN_FILE, **kw)
  flags.DEFINE_bool("plan_only", False,
                    "PubMed: build the dedup plan and stop.", **kw)
  flags.DEFINE_integer("num_hosts", 1, "Machines sharing the file list.",
                       **kw)
  flags.DEFINE_integer("host_index", 0, "This machine's index, from 0.",
                       **kw)
  flags.DEFINE_integer("progress_secs", 15,
                       "Seconds between progress lines.", **kw)


# ---------------------------------------------------------------- inputs ---

def file_order_key(path):
  return (os.path.basename(path), path)


def expand_inputs(patterns, source, exclude_dir=None):
  """The sorted input files for comma-separated globs or directories.

  Files under `exclude_dir` (the output directory) are never inputs.
  """
  wanted = (pmc.is_input_file if source == "pmc" else
            lambda p: re.search(r"\.xml(\.gz)?$", p, re.I) is not None)
  files = set()
  for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
    if os.path.isdir(pattern):
      matches = [os.path.join(d, n) for d, _, names in os.walk(pattern)
                 for n in names if wanted(n)]
    else:
      matches = [p for p in glob.glob(pattern, recursive=True)
                 if os.path.isfile(p)]
    if not matches:
      raise app.UsageError("--input: nothing matches %r" % pattern)
    files.update(os.path.abspath(p) for p in matches)
  if exclude_dir:
    inside = os.path.abspath(exclude_dir) + os.sep
    files = {p for p in files if not p.startswith(inside)}
  if not files:
    raise app.UsageError("--input: no input files outside --output_dir")
  return sorted(files, key=file_order_key)


def _stem(path):
  name = os.path.basename(path)
  for suffix in (".xml.gz", ".tar.gz", ".nxml", ".xml", ".tgz", ".tar",
                 ".txt", ".gz"):
    if name.lower().endswith(suffix):
      name = name[:-len(suffix)]
      break
  name = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")
  return name or "input"


def make_units(files, source, unit_bytes):
  """Groups input files into named units of work, deterministically."""
  groups = []
  loose = []

  def flush_loose():
    if loose:
      groups.append(("files-" + _stem(loose[0]), list(loose)))
      loose.clear()

  loose_bytes = 0
  for path in files:
    small = source == "pmc" and not path.lower().endswith(
        pmc.PACKAGE_SUFFIXES)
    if not small:
      flush_loose()
      loose_bytes = 0
      groups.append((_stem(path), [path]))
      continue
    loose.append(path)
    loose_bytes += _size(path)
    if loose_bytes >= unit_bytes:
      flush_loose()
      loose_bytes = 0
  flush_loose()
  seen = collections.Counter(name for name, _ in groups)
  units = []
  for name, paths in groups:
    if seen[name] > 1:
      name += "-" + hashlib.sha1(paths[0].encode("utf-8")).hexdigest()[:8]
    units.append({"unit": name, "inputs": paths})
  return units


def _size(path):
  try:
    return os.path.getsize(path)
  except OSError:
    return 0


# ------------------------------------------------------------ dedup plan ---

def _index_one(path):
  return pubmed.index_file(path)


def build_or_load_plan(files, plan_path, pool, report, progress_secs=15):
  """Per-file drop maps for PubMed update semantics (see bio.corpus.pubmed)."""
  names = [os.path.basename(p) for p in files]
  if os.path.exists(plan_path):
    try:
      with np.load(plan_path) as data:
        if list(data["files"]) == names:
          drops = [dict() for _ in files]
          for f, pos, r in zip(data["file_index"], data["position"],
                               data["reason"]):
            drops[int(f)][int(pos)] = _REASONS[int(r)]
          report("using the dedup plan in %s" % plan_path)
          return drops, [str(e) for e in data["errors"]]
        report("%s was built for other inputs: rebuilding it" % plan_path)
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile):
      report("%s is unreadable: rebuilding it" % plan_path)
  start = time.time()
  indexes = []
  iterator = (pool.imap(_index_one, files) if pool is not None
              else map(_index_one, files))
  last = start
  for i, index in enumerate(iterator):
    indexes.append(index)
    now = time.time()
    if now - last >= progress_secs or i + 1 == len(files):
      last = now
      rate = (i + 1) / max(now - start, 1e-9)
      report("index pass: files %d/%d, %.2f files/s, ETA %s" % (
          i + 1, len(files), rate, _hms((len(files) - i - 1) / rate)))
  drops = pubmed.build_plan(indexes)
  errors = ["%s: %s" % (p, ix.error) for p, ix in zip(files, indexes)
            if ix.error]
  rows = [(f, pos, _REASONS.index(r)) for f, d in enumerate(drops)
          for pos, r in sorted(d.items())]
  arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
  # np.savez needs a seekable file, which GFile is not: build it in memory.
  buf = io.BytesIO()
  np.savez(buf, files=np.asarray(names), file_index=arr[:, 0],
           position=arr[:, 1], reason=arr[:, 2], errors=np.asarray(errors))
  try:
    file_utils.atomic_write(plan_path, buf.getvalue())
  except OSError as e:
    raise app.UsageError("--pubmed_plan %s: cannot write it (%s)" % (
        plan_path, e.strerror or e))
  counts = collections.Counter(r for d in drops for r in d.values())
  report("dedup plan: %d files, %d PMID records dropped (%s) in %.1fs" % (
      len(files), sum(counts.values()), dict(counts), time.time() - start))
  return drops, errors


# ------------------------------------------------------------ the worker ---

_PROGRESS_QUEUE = None


def _init_worker(progress_queue):
  global _PROGRESS_QUEUE
  _PROGRESS_QUEUE = progress_queue


class _Sink(object):
  """A queue-like progress sink for in-process runs."""

  def __init__(self, callback):
    self.put = callback


class _RawProgress(object):
  raw = None

  def position(self):
    try:
      return self.raw.tell() if self.raw is not None else 0
    except (OSError, ValueError):
      return 0


def _documents(path, settings, skipped, errors, progress):
  """(blocks) of every document of one input file."""
  if settings["source"] == "pubmed":
    for article in pubmed.read_file(path, settings.get("drop"), skipped,
                                    errors, progress=progress):
      yield pubmed.article_blocks(article, settings["abstract_labels"])
  else:
    options = pmc.Options(settings["pmc_captions"],
                          settings["pmc_section_titles"],
                          settings["pmc_txt_front"])
    for article in pmc.read_file(path, options, skipped, errors,
                                 progress=progress):
      yield pmc.article_blocks(article)


def process_unit(spec):
  """Writes one unit's shards and part record; returns the part."""
  settings = spec["settings"]
  output_dir = settings["output_dir"]
  unit = spec["unit"]
  shards.clear_unit(output_dir, unit)
  writer = shards.ShardWriter(output_dir, unit, settings["shard_docs"],
                              settings["shard_bytes"])
  skipped = collections.Counter()
  errors = []
  seen = collections.Counter()
  sent = {"docs": 0, "words": 0, "bytes": 0, "time": time.time()}
  totals = {"docs": 0, "words": 0}

  def flush_skips():
    for reason, count in skipped.items():
      writer.skip(reason, count - seen[reason])
      seen[reason] = count

  def report(done_bytes, force=False):
    now = time.time()
    if _PROGRESS_QUEUE is None or (not force and now - sent["time"] < 2):
      return
    _PROGRESS_QUEUE.put((unit, totals["docs"] - sent["docs"],
                         totals["words"] - sent["words"],
                         done_bytes - sent["bytes"]))
    sent.update(docs=totals["docs"], words=totals["words"],
                bytes=done_bytes, time=now)

  base = 0
  try:
    for path in spec["inputs"]:
      progress = _RawProgress()
      settings_for_file = dict(settings, drop=spec.get("drop"))
      for blocks in _documents(path, settings_for_file, skipped, errors,
                               progress):
        flush_skips()
        lines = clean.clean_lines(blocks, settings["min_line_chars"])
        doc = sentences.split_lines(lines)
        if not doc:
          skipped["empty_after_cleaning"] += 1
          continue
        writer.add(doc, path)
        totals["docs"] += 1
        totals["words"] += sum(len(s.split()) for s in doc)
        report(base + progress.position())
      base += _size(path)
      flush_skips()
      report(base)
    flush_skips()
    shard_records = writer.close()
  except BaseException as e:
    writer.abort()
    if isinstance(e, Exception):
      raise RuntimeError("unit %s: %s: %s" % (unit, type(e).__name__,
                                               e)) from e
    raise
  report(base, force=True)
  part = {"unit": unit, "inputs": spec["inputs"],
          "fingerprint": spec["fingerprint"], "shards": shard_records,
          "skipped": dict(sorted(skipped.items())), "errors": errors}
  shards.write_part(output_dir, part)
  return part


# -------------------------------------------------------------- the run ---

def _hms(seconds):
  seconds = int(max(seconds, 0))
  return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def unit_fingerprint(settings, drop):
  keys = ("source", "min_line_chars", "abstract_labels", "dedup",
          "pmc_captions", "pmc_section_titles", "pmc_txt_front",
          "shard_docs", "shard_bytes")
  payload = {k: settings[k] for k in keys}
  payload["version"] = OUTPUT_VERSION
  payload["drop"] = sorted((drop or {}).items())
  return hashlib.sha1(json.dumps(payload, sort_keys=True).encode(
      "utf-8")).hexdigest()


def make_output_dir(output_dir):
  """Creates a local output directory; app.UsageError (one line) if it
  cannot be created or written. Shared with bio.beam.prepare_corpus."""
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise app.UsageError("--output_dir %s: cannot create it (%s)" % (
        output_dir, e.strerror or e))
  if not os.access(output_dir, os.W_OK | os.X_OK):
    raise app.UsageError("--output_dir %s is not writable" % output_dir)


def run(settings, report=print):
  """Runs a whole preparation; returns the manifest dict."""
  output_dir = settings["output_dir"]
  make_output_dir(output_dir)
  files = expand_inputs(settings["input"], settings["source"], output_dir)
  num_workers = max(1, settings["num_workers"])
  ctx = multiprocessing.get_context()
  progress_queue = ctx.Queue() if num_workers > 1 else None
  pool = (ctx.Pool(num_workers, initializer=_init_worker,
                   initargs=(progress_queue,)) if num_workers > 1 else None)
  try:
    return _run(settings, files, pool, progress_queue, report)
  finally:
    if pool is not None:
      pool.terminate()
      pool.join()


def _run(settings, files, pool, progress_queue, report):
  plan = _dedup_plan(settings, files, pool, report)
  if plan is None:
    return None
  drops, plan_errors = plan
  units = make_units(files, settings["source"], settings["unit_bytes"])
  units = units[settings["host_index"]::settings["num_hosts"]]
  todo, parts = _split_done_units(settings, units, files, drops, report)
  progress = _RunProgress(todo, settings["progress_secs"], report)
  if pool is None:
    _process_in_process(todo, progress)
  else:
    _process_in_pool(todo, pool, progress_queue, progress)
  parts.update(progress.parts)
  if todo:
    progress.line(force=True)
  return _write_run_manifest(settings, files, units, parts, plan_errors,
                             report)


def _dedup_plan(settings, files, pool, report):
  """(per-file drops, plan errors); all drops are None without PubMed dedup.
  None when the run stops at the plan (--plan_only)."""
  if not (settings["source"] == "pubmed" and settings["dedup"]):
    return [None] * len(files), []
  plan_path = settings.get("plan") or os.path.join(settings["output_dir"],
                                                   PLAN_FILE)
  drops, plan_errors = build_or_load_plan(files, plan_path, pool, report,
                                          settings["progress_secs"])
  if settings.get("plan_only"):
    report("wrote %s" % plan_path)
    return None
  return drops, plan_errors


def _split_done_units(settings, units, files, drops, report):
  """(work specs of the units to do, {unit: part} of those already done)."""
  drop_of = dict(zip(files, drops))
  todo, parts = [], {}
  for unit in units:
    drop = drop_of[unit["inputs"][0]] if len(unit["inputs"]) == 1 else None
    fingerprint = unit_fingerprint(settings, drop)
    part = shards.load_complete_part(settings["output_dir"], unit["unit"],
                                     fingerprint, unit["inputs"])
    if part is not None:
      parts[unit["unit"]] = part
    else:
      todo.append(dict(unit, settings=settings, drop=drop,
                       fingerprint=fingerprint))
  if parts:
    report("%d of %d units already complete: skipped" % (len(parts),
                                                         len(units)))
  return todo, parts


class _RunProgress(object):
  """Counts the workers' progress messages and finished parts; reports a
  progress line at most every `progress_secs`."""

  def __init__(self, todo, progress_secs, report):
    self.total_bytes = sum(_size(p) for spec in todo for p in spec["inputs"])
    self.todo_units = len(todo)
    self.todo_files = sum(len(spec["inputs"]) for spec in todo)
    self.progress_secs = progress_secs
    self.report = report
    self.stats = {"docs": 0, "words": 0, "bytes": 0, "units": 0, "files": 0}
    self.parts = {}
    self.start = self.last = time.time()

  def count(self, message):
    _, docs, words, nbytes = message
    self.stats["docs"] += docs
    self.stats["words"] += words
    self.stats["bytes"] += nbytes

  def absorb(self, part):
    self.stats["units"] += 1
    self.stats["files"] += len(part["inputs"])
    self.parts[part["unit"]] = part
    self.line()

  def line(self, force=False):
    now = time.time()
    if not force and now - self.last < self.progress_secs:
      return
    self.last = now
    stats = self.stats
    elapsed = max(now - self.start, 1e-9)
    rate = stats["bytes"] / elapsed
    eta = (self.total_bytes - stats["bytes"]) / rate if rate > 0 else 0
    self.report("files %d/%d (units %d/%d), documents %d, %.0f words/s, "
                "%.1f/%.1f MB, ETA %s" % (
                    stats["files"], self.todo_files, stats["units"],
                    self.todo_units, stats["docs"], stats["words"] / elapsed,
                    stats["bytes"] / 1e6, self.total_bytes / 1e6, _hms(eta)))


def _process_in_process(todo, progress):
  # The worker's progress messages are counted directly.
  _init_worker(_Sink(lambda message: (progress.count(message),
                                      progress.line())))
  try:
    for spec in todo:
      progress.absorb(process_unit(spec))
  finally:
    _init_worker(None)


def _process_in_pool(todo, pool, progress_queue, progress):
  pending = [pool.apply_async(process_unit, (spec,)) for spec in todo]
  while pending:
    try:
      while True:
        progress.count(progress_queue.get(timeout=0.5))
    except queue.Empty:
      pass
    still = []
    for result in pending:
      if result.ready():
        progress.absorb(result.get())
      else:
        still.append(result)
    pending = still
    progress.line()


def _write_run_manifest(settings, files, units, parts, plan_errors, report):
  """Writes this host's manifest in unit order and reports its totals."""
  ordered = [parts[u["unit"]] for u in units]
  header = {"format": "bioalbert-corpus/1", "source": settings["source"],
            "settings": {k: v for k, v in settings.items()
                         if k not in ("plan_only",)},
            "input_files": len(files), "plan_errors": plan_errors}
  name = shards.MANIFEST if settings["num_hosts"] == 1 else (
      "manifest-host%03d-of-%03d.json" % (settings["host_index"],
                                          settings["num_hosts"]))
  manifest = shards.write_manifest(
      os.path.join(settings["output_dir"], name), ordered, header)
  totals = manifest["totals"]
  report("done: %d documents, %d sentences, %d words in %d shards; "
         "skipped %s; %d unreadable inputs" % (
             totals["documents"], totals["sentences"], totals["words"],
             totals["shards"], totals["skipped"], totals["errors"]))
  for error in manifest["errors"]:
    report("unreadable: %s%s: %s" % (
        error["file"], (" [%s]" % error["member"]) if "member" in error
        else "", error["reason"]))
  return manifest


def corpus_settings(fv, output_dir):
  """The settings of define_corpus_flags' flags, shared with the Beam CLI."""
  if fv.shard_docs < 0 or fv.shard_bytes < 0:
    raise app.UsageError("--shard_docs and --shard_bytes must be >= 0")
  return {
      "source": fv.source, "input": fv.input, "output_dir": output_dir,
      "shard_docs": fv.shard_docs, "shard_bytes": fv.shard_bytes,
      "min_line_chars": fv.min_line_chars,
      "abstract_labels": fv.pubmed_abstract_labels,
      "dedup": fv.pubmed_dedup, "pmc_captions": fv.pmc_captions,
      "pmc_section_titles": fv.pmc_section_titles,
      "pmc_txt_front": fv.pmc_txt_front, "unit_bytes": fv.unit_bytes,
  }


def settings_from_flags(fv=FLAGS):
  """Validated run settings from parsed flags."""
  if fv.num_workers < 1:
    raise app.UsageError("--num_workers must be at least 1")
  if not 0 <= fv.host_index < fv.num_hosts:
    raise app.UsageError("--host_index must be in [0, --num_hosts)")
  if fv.plan_only and fv.source != "pubmed":
    raise app.UsageError("--plan_only is for --source=pubmed")
  settings = corpus_settings(fv, os.path.abspath(fv.output_dir))
  settings.update({
      "num_workers": fv.num_workers, "plan": fv.pubmed_plan,
      "plan_only": fv.plan_only, "num_hosts": fv.num_hosts,
      "host_index": fv.host_index, "progress_secs": fv.progress_secs,
  })
  return settings


def default_settings(source, input_patterns, output_dir, **overrides):
  """Run settings with the command line's defaults, for calling `run` from
  Python (paths are kept as given); `overrides` replace settings by key."""
  fv = flags.FlagValues()
  define_flags(fv)
  fv(["prepare_corpus", "--source=" + source, "--input=" + input_patterns,
      "--output_dir=" + output_dir])
  settings = settings_from_flags(fv)
  settings["output_dir"] = output_dir
  unknown = set(overrides) - set(settings)
  if unknown:
    raise KeyError("unknown settings: %s" % ", ".join(sorted(unknown)))
  settings.update(overrides)
  return settings


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Unexpected arguments: %s" % " ".join(argv[1:]))
  settings = settings_from_flags()
  manifest = run(settings, report=lambda msg: logging.info("%s", msg))
  if manifest is not None and FLAGS.strict and manifest["totals"]["errors"]:
    sys.exit(3)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["source", "input", "output_dir"])
  app.run(main)
