"""Shared fixtures: the real data directory (tests skip when it is absent)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from bio import paths  # pylint: disable=wrong-import-position


@pytest.fixture
def dead_pid():
  """The pid of a process that has exited (for stale locks and leftovers)."""
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


@pytest.fixture(scope="session")
def shared_data_dir():
  path = paths.default_data_dir()
  if not path or not os.path.isdir(path):
    pytest.skip("shared data not found: set $%s or put it at ../shared/data"
                % paths.ENV_VAR)
  return path


@pytest.fixture(scope="session")
def golden_dir():
  """Outputs of upstream google-research/albert itself (README there):
  $BIOALBERT_GOLDEN_DIR, else ../shared/golden beside the checkout."""
  path = os.environ.get("BIOALBERT_GOLDEN_DIR") or os.path.join(
      os.path.dirname(ROOT), "shared", "golden")
  if not os.path.isdir(path):
    pytest.skip("upstream golden outputs not found: set $BIOALBERT_GOLDEN_DIR "
                "or put them at ../shared/golden")
  return path


@pytest.fixture(scope="session")
def pubmed_dir(shared_data_dir):
  return os.path.join(shared_data_dir, "pubmed")


@pytest.fixture(scope="session")
def ner_dir(shared_data_dir):
  return os.path.join(shared_data_dir, "ner")


@pytest.fixture(scope="session")
def spm_model_file(pubmed_dir, tmp_path_factory):
  """A 1000-piece lower-cased SentencePiece model trained on the ~600
  abstracts of the two PubMed samples (about 2 s)."""
  from albert import train_spm
  from bio.corpus import pubmed
  texts = []
  for name in ("pubmed-sample-0001.xml.gz", "pubmed-sample-0002.xml.gz"):
    for article in pubmed.read_file(os.path.join(pubmed_dir, name)):
      texts.extend(pubmed.article_blocks(article))
  prefix = str(tmp_path_factory.mktemp("spm") / "bio1k")
  return train_spm.train_sentencepiece_from_texts(texts, prefix,
                                                  vocab_size=1000)


_SERVE_CODE = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the SentencePiece ops
loaded = tf.saved_model.load(EXPORT_DIR)
texts = json.loads(TEXTS)
out = loaded.signatures["serving_default"](text=tf.constant(texts, tf.string))
out = {k: v.numpy() for k, v in out.items()}
result = []
for i in range(len(texts)):
  n = int(out["num_entities"][i])
  result.append([[int(out["starts"][i][j]), int(out["ends"][i][j]),
                  out["types"][i][j].decode(), float(out["scores"][i][j]),
                  out["texts"][i][j].decode()] for j in range(n)])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("albert", "bio"))
print(json.dumps({"entities": result, "leaked": leaked,
                  "signatures": sorted(loaded.signatures.keys())}))
"""


def _run_python(code, timeout=300):
  """Runs `code` in a fresh interpreter (outside the repo, so nothing of the
  project is importable by accident); returns its last stdout line as JSON."""
  import json
  import subprocess
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=timeout, cwd="/")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def run_python():
  return _run_python


@pytest.fixture(scope="session")
def serve_texts():
  """f(export_dir, texts) -> served entities, from a fresh process that
  imports only tensorflow and tensorflow_text."""
  import json

  def serve(export_dir, texts):
    code = _SERVE_CODE.replace("EXPORT_DIR", repr(export_dir)).replace(
        "TEXTS", repr(json.dumps(texts)))
    return _run_python(code)

  return serve
