"""Sharded UTF-8 text output with atomic writes and a JSON manifest.

Layout of an output directory:

  <unit>-00000.txt, <unit>-00001.txt, ...  the shards: one sentence per
      line, one blank line after every document (create_pretraining_data.py's
      input format; the final blank line keeps a shard's last document from
      running into the next shard);
  manifest.parts/<unit>.json   one record per finished unit of work;
  manifest.json                everything, rebuilt at the end of a run.

A unit is one input file (or a group of small ones); its shards are written
under a temporary name and renamed into place when full, and its part record
is written last, so a part on disk means every shard it lists is complete. A
re-run skips the units whose part matches the settings and whose shards are
all there with the recorded sizes, and rewrites the others from scratch.
"""
import collections
import json
import os
import re

from albert import file_utils

PARTS_DIR = "manifest.parts"
MANIFEST = "manifest.json"
SHARD_SUFFIX = ".txt"


def write_json(path, obj):
  """Writes `obj` as JSON atomically and durably (fsync before the rename:
  a part on disk must mean its shards are on disk too)."""
  # ensure_ascii: a file name that is not UTF-8 (surrogate escapes) still
  # encodes.
  file_utils.atomic_write(path, json.dumps(obj, indent=1, sort_keys=True) +
                          "\n", fsync=True)


def shard_name(unit, index):
  return "%s-%05d%s" % (unit, index, SHARD_SUFFIX)


def _unit_file_re(unit):
  """A unit's shards and their temporary files (file_utils.temp_path names,
  or `.tmp<pid>` ones from older versions)."""
  return re.compile(r"^\.?%s-\d{5}%s(\.tmp\d+|\.tmp-\d+-[0-9a-f]+)?$" % (
      re.escape(unit), re.escape(SHARD_SUFFIX)))


class ShardWriter(object):
  """Writes one unit's documents into shards of bounded size.

  Args:
    output_dir: where the shards go.
    unit: the shard name prefix.
    max_docs: documents per shard (0: no limit).
    max_bytes: bytes per shard (0: no limit); a document larger than this
      gets a shard of its own.
  """

  def __init__(self, output_dir, unit, max_docs=0, max_bytes=0):
    self.output_dir = output_dir
    self.unit = unit
    self.max_docs = max_docs
    self.max_bytes = max_bytes
    self.shards = []
    self._file = None
    self._writing = None
    self._current = None
    self._pending_skips = collections.Counter()

  def _open(self):
    name = shard_name(self.unit, len(self.shards))
    self._writing = file_utils.atomic_file(
        os.path.join(self.output_dir, name), "w", fsync=True)
    self._file = self._writing.__enter__()
    self._current = {"file": name, "documents": 0, "sentences": 0,
                     "words": 0, "bytes": 0, "sources": [],
                     "skipped": dict(self._pending_skips)}
    self._pending_skips.clear()

  def _finish(self):
    writing, self._writing, self._file = self._writing, None, None
    writing.__exit__(None, None, None)
    self.shards.append(self._current)
    self._current = None

  def add(self, sentences, source):
    """Appends one document (a non-empty list of one-line sentences)."""
    if not sentences:
      raise ValueError("a document needs at least one sentence")
    # Every document ends with a blank line, the last one too: upstream's
    # reader carries a file's last document into the next file otherwise.
    text = "\n".join(sentences) + "\n\n"
    size = len(text.encode("utf-8"))
    cur = self._current
    if cur is not None and cur["documents"] and (
        (self.max_docs and cur["documents"] >= self.max_docs) or
        (self.max_bytes and cur["bytes"] + size > self.max_bytes)):
      self._finish()
    if self._current is None:
      self._open()
    cur = self._current
    self._file.write(text)
    cur["documents"] += 1
    cur["sentences"] += len(sentences)
    cur["words"] += sum(len(s.split()) for s in sentences)
    cur["bytes"] += size
    if source not in cur["sources"]:
      cur["sources"].append(source)

  def skip(self, reason, count=1):
    """Counts skipped records against the shard being written."""
    if count <= 0:
      return
    if self._current is not None:
      skipped = self._current["skipped"]
      skipped[reason] = skipped.get(reason, 0) + count
    else:
      self._pending_skips[reason] += count

  def close(self):
    """Finishes the last shard; returns the shard records."""
    if self._current is not None:
      self._finish()
    if self._pending_skips and self.shards:
      skipped = self.shards[-1]["skipped"]
      for reason, count in self._pending_skips.items():
        skipped[reason] = skipped.get(reason, 0) + count
      self._pending_skips.clear()
    return self.shards

  def abort(self):
    """Drops the shard being written (its temporary file)."""
    writing, self._writing, self._file = self._writing, None, None
    if writing is not None:
      # atomic_file removes its temporary file when an exception reaches it.
      writing.__exit__(_Aborted, _Aborted(), None)
    self._current = None


class _Aborted(Exception):
  """Thrown into a shard's atomic_file to discard it."""


def part_path(output_dir, unit):
  return os.path.join(output_dir, PARTS_DIR, unit + ".json")


def write_part(output_dir, part):
  os.makedirs(os.path.join(output_dir, PARTS_DIR), exist_ok=True)
  write_json(part_path(output_dir, part["unit"]), part)


def load_complete_part(output_dir, unit, fingerprint, inputs):
  """The part of a finished unit, or None if it must be (re)done."""
  try:
    with open(part_path(output_dir, unit), encoding="utf-8") as f:
      part = json.load(f)
  except (OSError, ValueError):
    return None
  if part.get("fingerprint") != fingerprint or part.get("inputs") != inputs:
    return None
  for shard in part.get("shards", []):
    try:
      if os.path.getsize(os.path.join(output_dir,
                                      shard["file"])) != shard["bytes"]:
        return None
    except (OSError, KeyError, TypeError):
      return None
  return part


def clear_unit(output_dir, unit):
  """Removes a unit's shards, temporary files and part record."""
  pattern = _unit_file_re(unit)
  for name in os.listdir(output_dir):
    if pattern.match(name):
      os.remove(os.path.join(output_dir, name))
  try:
    os.remove(part_path(output_dir, unit))
  except FileNotFoundError:
    pass


def summarize(parts):
  """Totals over unit parts: documents, sentences, words, bytes, skips."""
  totals = collections.Counter()
  skipped = collections.Counter()
  for part in parts:
    for shard in part["shards"]:
      for key in ("documents", "sentences", "words", "bytes"):
        totals[key] += shard[key]
      totals["shards"] += 1
    skipped.update(part.get("skipped", {}))
    totals["errors"] += len(part.get("errors", []))
    totals["units"] += 1
  result = {k: totals[k] for k in ("units", "shards", "documents",
                                   "sentences", "words", "bytes", "errors")}
  result["skipped"] = dict(sorted(skipped.items()))
  return result


def write_manifest(path, parts, header):
  """Writes the run's manifest: header fields, totals, units and shards."""
  manifest = dict(header)
  manifest["totals"] = summarize(parts)
  manifest["units"] = [
      {k: part[k] for k in ("unit", "inputs", "skipped", "errors")} | {
          "shards": [s["file"] for s in part["shards"]]} for part in parts]
  manifest["shards"] = [shard for part in parts for shard in part["shards"]]
  manifest["errors"] = [e for part in parts for e in part.get("errors", [])]
  write_json(path, manifest)
  return manifest
