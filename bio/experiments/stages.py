"""Multi-stage jobs that run the project's command-line tools one after the
other, as a user would type them: `make demo` (`bio.demo`) and the
experiments (`bio.experiments.pretraining_gain`).

Each stage prints its command, logs the tool's output to
<output_dir>/logs/NN-<name>.log, and is skipped when its outputs already
exist (the tools write them atomically, so existing means complete): a
re-run resumes at the first unfinished stage. A failing stage prints the
end of its log and stops the job with a one-line error.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class StageError(SystemExit):
  """A stage failed (its log tail has been printed)."""


def shell_quote(arg):
  return "'%s'" % arg if any(c in arg for c in " *,;&|") else arg


def _all_exist(done):
  if done is None:
    return False
  if isinstance(done, str):
    done = [done]
  return bool(done) and all(os.path.exists(p) for p in done)


class Stages(object):
  """Runs numbered stages of one job under `out_dir`."""

  def __init__(self, out_dir, job="demo", out=sys.stdout):
    self.out_dir = out_dir
    self.job = job
    self.logs = os.path.join(out_dir, "logs")
    os.makedirs(self.logs, exist_ok=True)
    self.number = 0
    self._out = out
    self.seconds = {}  # title -> wall seconds of stages run now
    self.started = time.time()

  def say(self, text):
    self._out.write(text + "\n")
    self._out.flush()

  def run(self, title, argv, done, name=None):
    """Runs `argv` unless every path in `done` exists. Returns True if it
    ran, False if skipped."""
    name = name or title.split()[0].lower()
    return self._stage(title, done,
                       lambda: self._subprocess(title, argv, name), argv)

  def call(self, title, fn, done):
    """Runs `fn()` in this process as a stage (same skip rule)."""
    return self._stage(title, done, fn)

  def _stage(self, title, done, work, argv=None):
    self.number += 1
    self.say("\n[%d] %s" % (self.number, title))
    if argv:
      self.say("    $ " + " ".join(shell_quote(a) for a in argv))
    if _all_exist(done):
      self.say("    already done")
      return False
    started = time.time()
    log = work()
    self.seconds[title] = time.time() - started
    self.say("    done in %.0f s%s" % (
        self.seconds[title], " (log: %s)" % log if argv else ""))
    return True

  def _subprocess(self, title, argv, name):
    """Runs the tool, output to the stage's log; returns the log path."""
    log = os.path.join(self.logs, "%02d-%s.log" % (self.number, name))
    with open(log, "w", encoding="utf-8") as f:
      proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    if proc.returncode != 0:
      with open(log, encoding="utf-8", errors="replace") as f:
        tail = f.read()[-3000:]
      sys.stderr.write(tail + "\n")
      raise StageError("%s: stage %d (%s) failed, exit %d; log: %s" % (
          self.job, self.number, title, proc.returncode, log))
    return log
