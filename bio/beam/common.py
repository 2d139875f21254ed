"""What the Beam pipelines share: filesystem copies in and out of a worker's
scratch space, pipeline options with a local default runner, Beam counters
read after a run, and flag parsing that leaves unknown flags to Beam.

Every path may be local or on any Beam filesystem (`gs://...`).
"""
import json
import os
import posixpath
import shutil
import tempfile
import uuid

from absl import flags
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

_COPY_CHUNK = 1 << 20
DEFAULT_RUNNER = "FnApiRunner"


def is_remote(path):
  """Whether `path` names a file on a Beam filesystem other than local disk."""
  return FileSystems.get_scheme(path) is not None


def stage_file(path, directory):
  """A local copy of a remote file (raw bytes: .gz stays compressed).

  The copy keeps the base name, which the readers use (file kind, article
  id of a loose PMC file).
  """
  local = os.path.join(directory, posixpath.basename(path))
  with FileSystems.open(
      path, compression_type=CompressionTypes.UNCOMPRESSED) as src:
    with open(local, "wb") as dst:
      shutil.copyfileobj(src, dst, _COPY_CHUNK)
  return local


def publish_file(local_path, destination):
  """Copies a local file to `destination` (local or remote), atomically.

  The bytes go to a hidden temporary name in the same directory, which is
  then renamed, so a reader never sees a partial file.
  """
  directory, name = FileSystems.split(destination)
  tmp = FileSystems.join(directory, ".%s.beamtmp-%s" % (
      name, uuid.uuid4().hex[:12]))
  try:
    with open(local_path, "rb") as src:
      with FileSystems.create(
          tmp, compression_type=CompressionTypes.UNCOMPRESSED) as dst:
        shutil.copyfileobj(src, dst, _COPY_CHUNK)
    FileSystems.rename([tmp], [destination])
  except BaseException:
    if FileSystems.exists(tmp):
      FileSystems.delete([tmp])
    raise


def read_json(path):
  with FileSystems.open(
      path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    return json.loads(f.read().decode("utf-8"))


class ScratchDir(object):
  """A temporary local directory, removed on exit."""

  def __enter__(self):
    self.path = tempfile.mkdtemp(prefix="bioalbert-beam-")
    return self.path

  def __exit__(self, *unused):
    shutil.rmtree(self.path, ignore_errors=True)


def counters(result, namespace):
  """{counter name: value} of a namespace's Beam counters after a run."""
  values = {}
  query = result.metrics().query(MetricsFilter().with_namespace(namespace))
  for counter in query["counters"]:
    value = counter.committed
    if value is None:
      value = counter.attempted
    values[counter.key.metric.name] = (
        values.get(counter.key.metric.name, 0) + value)
  return values


def pipeline_options(pipeline_args):
  """PipelineOptions from the command line; the local default runner is
  FnApiRunner (DirectRunner first tries Prism, a binary it downloads)."""
  args = list(pipeline_args)
  if not any(a == "--runner" or a.startswith("--runner=") for a in args):
    args.append("--runner=" + DEFAULT_RUNNER)
  return PipelineOptions(args)


def parse_flags(argv):
  """absl takes the flags it knows; the rest is left for Beam."""
  return flags.FLAGS(argv, known_only=True)
