"""The eight BioNER datasets of the BioALBERT paper: where they come from,
what they contain, and where they are on disk.

`DATASETS` maps a dataset name to a dict with:
  name, dirname        the name used in the paper / the directory name
  entity_types         entity types of the typed (MTL) labels; [] if untyped
  files                split -> file name ("train", "dev", "test", "train_dev")
  source               which preprocessed copy the files and counts describe
  urls                 file name -> public URL of that copy (for --download)
  archive_members      for copies inside an archive: file name -> member path
  homepage             the original corpus
  sentences, mentions  split -> known count (sentences = non-empty blocks
                       without -DOCSTART-, mentions = labels starting with B)
  converter            for BC4CHEMD: the module that builds it from CHEMDNER
  reference_sentences  for BC4CHEMD: BioBERT's (MTL) copy, for comparison

`resolve_dataset_dir(name)` finds a dataset under the data directory
(flag, $BIOALBERT_DATA_DIR, ../shared/data); BC4CHEMD is converted from the
CHEMDNER distribution into a cache directory on first use.

Download (needs network; never used by the tests):
  python -m bio.ner.datasets --download=NCBI-disease --data_dir=DIR
  python -m bio.ner.datasets --list
"""
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.request

from absl import logging

from bio import paths
from bio.ner import chemdner
from bio.ner import iob

_MTL = ("https://raw.githubusercontent.com/cambridgeltl/"
        "MTL-Bioinformatics-2016/master/data/")
_BIOBERT_DATASETS = ("http://nlp.dmis.korea.edu/projects/"
                     "biobert-2020-checkpoints/datasets.tar.gz")
_CHEMDNER_TARBALL = ("https://biocreative.bioinformatics.udel.edu/media/store/"
                     "files/2014/chemdner_corpus.tar.gz")

SPLITS = ("train", "dev", "test")
_STD_FILES = {"train": "train.tsv", "dev": "devel.tsv", "test": "test.tsv"}

# Where ner/ and ner-raw/ sit below the data directory.
NER_SUBDIR = "ner"
RAW_SUBDIR = os.path.join("ner-raw", "chemdner")


def _mtl_urls(mtl_dir):
  return {f: _MTL + mtl_dir + "/" + f for f in _STD_FILES.values()}


def _counts(train, dev, test, **extra):
  counts = {"train": train, "dev": dev, "test": test}
  counts.update(extra)
  return counts


DATASETS = {
    "NCBI-disease": {
        "dirname": "NCBI-disease",
        "entity_types": ["Disease"],
        "source": "MTL-Bioinformatics-2016 (Crichton et al. 2017)",
        "urls": _mtl_urls("NCBI-disease-IOB"),
        "homepage": "https://www.ncbi.nlm.nih.gov/CBBresearch/Dogan/DISEASE/",
        "sentences": _counts(5424, 923, 940),
        "mentions": _counts(5134, 787, 960),
    },
    "BC5CDR-disease": {
        "dirname": "BC5CDR-disease",
        "entity_types": ["Disease"],
        "source": "MTL-Bioinformatics-2016 (Crichton et al. 2017)",
        "urls": _mtl_urls("BC5CDR-disease-IOB"),
        "homepage": "https://biocreative.bioinformatics.udel.edu/tasks/"
                    "biocreative-v/track-3-cdr/",
        "sentences": _counts(4560, 4581, 4797),
        "mentions": _counts(4182, 4246, 4424),
    },
    "BC5CDR-chem": {
        "dirname": "BC5CDR-chem",
        "entity_types": ["Chemical"],
        "source": "MTL-Bioinformatics-2016 (Crichton et al. 2017)",
        "urls": _mtl_urls("BC5CDR-chem-IOB"),
        "homepage": "https://biocreative.bioinformatics.udel.edu/tasks/"
                    "biocreative-v/track-3-cdr/",
        "sentences": _counts(4560, 4581, 4797),
        "mentions": _counts(5203, 5347, 5385),
    },
    "BC4CHEMD": {
        "dirname": "BC4CHEMD",
        "entity_types": ["Chemical"],
        "source": "converted by bio.ner.chemdner from the CHEMDNER corpus v1.0",
        "urls": {"chemdner_corpus.tar.gz": _CHEMDNER_TARBALL},
        "homepage": "https://biocreative.bioinformatics.udel.edu/resources/"
                    "biocreative-iv/chemdner-corpus/",
        "converter": "bio.ner.chemdner",
        # Output of bio.ner.chemdner on the CHEMDNER v1.0 files (default options):
        # the corpus' 29,478 / 29,526 / 25,351 annotations less 41 nested
        # in or crossing another (dev; IOB2 holds one layer) and 4 empty
        # ones (test).
        "sentences": _counts(30368, 30419, 26070),
        "mentions": _counts(29478, 29485, 25347),
        # BioBERT's BC4CHEMD (the MTL-Bioinformatics-2016 conversion), as
        # published in its dataset statistics; a different sentence splitter.
        "reference_sentences": _counts(30682, 30639, 26364),
    },
    "BC2GM": {
        "dirname": "BC2GM",
        "entity_types": ["GENE"],
        "source": "MTL-Bioinformatics-2016 (Crichton et al. 2017)",
        "urls": _mtl_urls("BC2GM-IOB"),
        "homepage": "https://biocreative.bioinformatics.udel.edu/tasks/"
                    "biocreative-ii/task-1a-gene-mention-tagging/",
        "sentences": _counts(12574, 2519, 5038),
        "mentions": _counts(15197, 3061, 6325),
    },
    "JNLPBA": {
        "dirname": "JNLPBA",
        "entity_types": ["protein", "DNA", "RNA", "cell_type", "cell_line"],
        "source": "MTL-Bioinformatics-2016 (Crichton et al. 2017); "
                  "has -DOCSTART- lines; train+dev = the original training set",
        "urls": _mtl_urls("JNLPBA"),
        "homepage": "http://www.geniaproject.org/shared-tasks/"
                    "bionlp-jnlpba-shared-task-2004",
        "sentences": _counts(16807, 1739, 3856),
        "mentions": _counts(46750, 4551, 8662),
    },
    "LINNAEUS": {
        "dirname": "linnaeus",
        "entity_types": ["Species"],
        "source": "MTL-Bioinformatics-2016 (Crichton et al. 2017)",
        "urls": _mtl_urls("linnaeus-IOB"),
        "homepage": "http://linnaeus.sourceforge.net/",
        "sentences": _counts(11935, 4078, 7142),
        "mentions": _counts(2119, 711, 1433),
    },
    "Species-800": {
        "dirname": "s800",
        "entity_types": [],  # BioBERT's copy: untyped B/I/O (species)
        "source": "BioBERT's preprocessed copy (untyped B/I/O)",
        "urls": {f: _BIOBERT_DATASETS for f in
                 ("train.tsv", "devel.tsv", "test.tsv", "train_dev.tsv")},
        "archive_members": {f: "datasets/NER/s800/" + f for f in
                            ("train.tsv", "devel.tsv", "test.tsv",
                             "train_dev.tsv")},
        "homepage": "https://species.jensenlab.org/",
        "sentences": _counts(5733, 830, 1630, train_dev=6563),
        "mentions": _counts(2557, 384, 767, train_dev=2941),
    },
}

for _name, _info in DATASETS.items():
  _info["name"] = _name
  _info.setdefault("files", dict(_STD_FILES))
  if "train_dev" in _info["sentences"]:
    _info["files"]["train_dev"] = "train_dev.tsv"

# Lower-case aliases -> registry name.
_ALIASES = {
    "ncbi": "NCBI-disease", "ncbi_disease": "NCBI-disease",
    "bc5cdr_disease": "BC5CDR-disease", "bc5cdr_chem": "BC5CDR-chem",
    "bc5cdr-chemical": "BC5CDR-chem", "chemdner": "BC4CHEMD",
    "bc4chem": "BC4CHEMD", "bc2": "BC2GM", "jnlpba": "JNLPBA",
    "linnaeus": "LINNAEUS", "s800": "Species-800", "species800": "Species-800",
}
for _name, _info in DATASETS.items():
  _ALIASES[_name.lower()] = _name
  _ALIASES[_info["dirname"].lower()] = _name


def get_dataset(name):
  """The registry entry for `name` (case-insensitive; dirnames work too)."""
  key = _ALIASES.get(str(name).lower())
  if key is None:
    raise ValueError("Unknown NER dataset %r; known: %s" %
                     (name, ", ".join(sorted(DATASETS))))
  return DATASETS[key]


def find_dataset_by_dir(path):
  """The registry entry whose dirname is the basename of `path`, or None."""
  base = os.path.basename(os.path.normpath(path)).lower()
  key = _ALIASES.get(base)
  if key is None or DATASETS[key]["dirname"].lower() != base:
    return None
  return DATASETS[key]


def has_splits(directory):
  """True when `directory` holds train.tsv, test.tsv and devel.tsv/dev.tsv."""
  def present(name):
    return os.path.isfile(os.path.join(directory, name))
  return (present("train.tsv") and present("test.tsv") and
          (present("devel.tsv") or present("dev.tsv")))


def raw_chemdner_dir(data_dir=None):
  """<data>/ner-raw/chemdner if it exists, else None."""
  try:
    root = paths.resolve_data_dir(data_dir)
  except FileNotFoundError:
    return None
  path = os.path.join(root, RAW_SUBDIR)
  return path if os.path.isdir(path) else None


def _candidates(info, data_dir):
  """Directories where a dataset may already be, in order of preference."""
  out = []
  try:
    root = paths.resolve_data_dir(data_dir)
  except FileNotFoundError:
    root = None
  if root:
    if os.path.basename(os.path.normpath(root)).lower() == (
        info["dirname"].lower()):
      out.append(root)  # data_dir is the dataset directory itself
    out.append(os.path.join(root, NER_SUBDIR, info["dirname"]))
    # A data_dir that directly holds the dataset folders (BioBERT's NER/).
    out.append(os.path.join(root, info["dirname"]))
  return out


def resolve_dataset_dir(name, data_dir=None, cache_dir=None, convert=True):
  """The directory holding `name`'s train/devel/test.tsv.

  Looks in <data_dir> itself if it is named <dirname>, then in
  <data_dir>/ner/<dirname>, then <data_dir>/<dirname>, where
  data_dir is resolved by bio.paths (flag, $BIOALBERT_DATA_DIR,
  ../shared/data). BC4CHEMD is not distributed in this format: unless a copy
  is found there, it is converted from <data_dir>/ner-raw/chemdner into
  <cache_dir>/BC4CHEMD (default cache: $BIOALBERT_CACHE_DIR or
  ~/.cache/bioalbert) the first time, and reused afterwards.

  Raises:
    ValueError: unknown dataset name.
    FileNotFoundError: the dataset is not available (message says how to get
      it).
  """
  info = get_dataset(name)
  tried = _candidates(info, data_dir)
  for path in tried:
    if has_splits(path):
      return path
  if info.get("converter"):
    cache_root = cache_dir or paths.default_cache_dir()
    target = os.path.join(cache_root, info["dirname"])
    raw = raw_chemdner_dir(data_dir)
    if has_splits(target) and chemdner.is_current_conversion(target):
      return target
    tried.append(target)
    if raw and convert:
      logging.info("Converting CHEMDNER (%s) into %s", raw, target)
      chemdner.convert_corpus(raw, target)
      return target
  raise FileNotFoundError(
      "NER dataset %s not found (looked in: %s). Download it with `python -m "
      "bio.ner.datasets --download=%s --data_dir=DIR` and pass --data_dir, or "
      "set $%s." % (info["name"], ", ".join(tried) or "no data directory",
                    info["name"], paths.ENV_VAR))


def check_counts(name, counts):
  """Compares observed counts with the registry's.

  Args:
    name: dataset name.
    counts: split -> (num_sentences, num_mentions).

  Returns:
    A list of human-readable mismatch descriptions (empty when all match).
  """
  info = get_dataset(name)
  problems = []
  for split, (sentences, mentions) in sorted(counts.items()):
    want_s = info["sentences"].get(split)
    want_m = info["mentions"].get(split)
    if want_s is not None and sentences != want_s:
      problems.append("%s %s: %d sentences, registry says %d" %
                      (info["name"], split, sentences, want_s))
    if want_m is not None and mentions != want_m:
      problems.append("%s %s: %d mentions, registry says %d" %
                      (info["name"], split, mentions, want_m))
  return problems


def load(data_dir, collapse_types=False, dataset=None, strict_labels=False):
  """Reads a dataset directory (`bio.ner.iob.load_splits`) and, when it is a
  known dataset (by `dataset` name or by the directory name), warns if its
  sentence or mention counts differ from the registry's.

  Returns:
    dict with keys "train", "dev", "test" (and "train_dev" when present).
  """
  splits = iob.load_splits(data_dir, collapse_types,
                           strict_labels=strict_labels)
  info = get_dataset(dataset) if dataset else find_dataset_by_dir(data_dir)
  if info is not None:
    counts = {split: (len(sentences), iob.count_mentions(sentences))
              for split, sentences in splits.items()}
    problems = check_counts(info["name"], counts)
    for problem in problems:
      logging.warning("Count mismatch (%s): %s", data_dir, problem)
    if not problems:
      logging.info("%s: counts match the registry entry for %s", data_dir,
                   info["name"])
  return splits


# ---------------------------------------------------------------------------
# Download (network; for users, never called by the tests).


# SHA-256 of the downloaded files, by URL. None of them could be computed
# here (no network): downloads of files absent here log a warning.
SHA256 = {}


def _candidate_urls(url):
  """https first for an http URL (the hash check makes either safe)."""
  if url.startswith("http://"):
    return ["https://" + url[len("http://"):], url]
  return [url]


def _fetch(url, dest_dir, sha256=None):
  """Downloads `url` (over https when it can) into a temporary file in
  `dest_dir`, checks its SHA-256 (`sha256`, else SHA256[url]); returns the
  temporary path."""
  expected = sha256 or SHA256.get(url)
  urls = _candidate_urls(url)
  for i, candidate in enumerate(urls):
    try:
      tmp, digest = _fetch_one(candidate, dest_dir)
      break
    except OSError as e:
      if i == len(urls) - 1:
        raise
      logging.warning("%s failed (%s); trying %s", candidate, e, urls[i + 1])
  if expected is None:
    logging.warning("%s has no known SHA-256 (got %s): not verified", url,
                    digest)
  elif digest != expected:
    os.unlink(tmp)
    raise ValueError("%s: SHA-256 %s, expected %s: the download is corrupt "
                     "or the file changed; nothing was installed"
                     % (url, digest, expected))
  return tmp


def _fetch_one(url, dest_dir):
  """(temporary path, SHA-256 hex) of one download of `url`."""
  fd, tmp = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
  start = time.time()
  done = 0
  hasher = hashlib.sha256()
  try:
    with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as resp:
      total = int(resp.headers.get("Content-Length") or 0)
      last_log = start
      while True:
        chunk = resp.read(1 << 20)
        if not chunk:
          break
        out.write(chunk)
        hasher.update(chunk)
        done += len(chunk)
        now = time.time()
        if now - last_log > 10:
          rate = done / max(now - start, 1e-9)
          eta = (total - done) / rate if total else float("nan")
          logging.info("%s: %.1f MB at %.1f MB/s, ETA %.0f s", url,
                       done / 1e6, rate / 1e6, eta)
          last_log = now
  except BaseException:
    os.unlink(tmp)
    raise
  logging.info("Fetched %s (%.1f MB in %.1f s)", url, done / 1e6,
               time.time() - start)
  return tmp, hasher.hexdigest()


def _extract_member(archive, member, dest_dir):
  """Copies one member of a tar archive to a temporary file in `dest_dir`."""
  with tarfile.open(archive) as tar:
    src = tar.extractfile(member)
    if src is None:
      raise FileNotFoundError("%s has no file %s" % (archive, member))
    fd, tmp = tempfile.mkstemp(prefix=".extract-", dir=dest_dir)
    with os.fdopen(fd, "wb") as out:
      shutil.copyfileobj(src, out)
  return tmp


def _install(temps, directory):
  """Renames {final name: temporary path} into `directory` once all exist."""
  umask = os.umask(0)
  os.umask(umask)
  for fname, tmp in temps.items():
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp files are private
    os.replace(tmp, os.path.join(directory, fname))
  temps.clear()


def download(name, data_dir):
  """Downloads dataset `name` into <data_dir>/ner/<dirname>.

  BC4CHEMD: fetches the CHEMDNER distribution into <data_dir>/ner-raw/chemdner
  and converts it into <data_dir>/ner/BC4CHEMD. Files are renamed into place
  only when every file of the dataset has been fetched.
  Returns the dataset directory.
  """
  info = get_dataset(name)
  target = os.path.join(data_dir, NER_SUBDIR, info["dirname"])
  os.makedirs(target, exist_ok=True)
  temps, archives = {}, {}
  try:
    if info.get("converter"):
      raw = os.path.join(data_dir, RAW_SUBDIR)
      os.makedirs(raw, exist_ok=True)
      archive = archives["chemdner"] = _fetch(
          info["urls"]["chemdner_corpus.tar.gz"], raw)
      with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and m.name.endswith(".txt")]
      for member in members:
        temps[os.path.basename(member.name)] = _extract_member(
            archive, member, raw)
      _install(temps, raw)
      chemdner.convert_corpus(raw, target)
      return target
    for fname, url in sorted(info["urls"].items()):
      member = info.get("archive_members", {}).get(fname)
      if member:
        if url not in archives:
          archives[url] = _fetch(url, target)
        temps[fname] = _extract_member(archives[url], member, target)
      else:
        temps[fname] = _fetch(url, target)
    _install(temps, target)
    return target
  finally:
    for tmp in list(temps.values()) + list(archives.values()):
      if os.path.exists(tmp):
        os.unlink(tmp)


def _list_datasets(data_dir):
  """One line per dataset: where it is and its registry counts."""
  lines = []
  for name, info in DATASETS.items():
    try:
      where = resolve_dataset_dir(name, data_dir, convert=False)
    except FileNotFoundError:
      raw = raw_chemdner_dir(data_dir) if info.get("converter") else None
      where = ("(converted on first use from %s)" % raw if raw
               else "(not found)")
    lines.append("%-15s %-40s sentences %s  mentions %s  %s" % (
        name, ", ".join(info["entity_types"]) or "untyped",
        "/".join(str(info["sentences"][s]) for s in SPLITS),
        "/".join(str(info["mentions"][s]) for s in SPLITS), where))
  return "\n".join(lines)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags_obj = flags.FLAGS
  if flags_obj.list or not flags_obj.download:
    print(_list_datasets(flags_obj.data_dir))
    return 0
  if not flags_obj.data_dir:
    logging.error("--download needs --data_dir")
    return 1
  try:
    names = (list(DATASETS) if flags_obj.download == "all" else
             [get_dataset(n)["name"] for n in flags_obj.download.split(",")])
    for name in names:
      path = download(name, flags_obj.data_dir)
      print("%s -> %s" % (name, path))
      print("expected counts: " + json.dumps(
          {"sentences": get_dataset(name)["sentences"],
           "mentions": get_dataset(name)["mentions"]}))
  except (ValueError, OSError) as e:  # unknown name, network, bad archive
    logging.error("%s", e)
    return 1
  return 0


def _define_flags():
  # Defined only when run as a script: run_ner.py has its own data_dir flag.
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("download", None,
                      "Dataset name(s), comma-separated, or 'all'.")
  flags.DEFINE_string("data_dir", None,
                      "Data directory; datasets go to <data_dir>/ner/<name>.")
  flags.DEFINE_bool("list", False, "List the datasets and where they are.")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
