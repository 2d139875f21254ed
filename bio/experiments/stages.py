"""Multi-stage jobs that run the project's command-line tools one after the
other, as a user would type them: `make demo` (`bio.demo`) and the
experiments (`bio.experiments.pretraining_gain`).

Each stage prints its command, logs the tool's output to
<output_dir>/logs/NN-<name>.log, and is skipped when its outputs already
exist (the tools write them atomically, so existing means complete): a
re-run resumes at the first unfinished stage. A failing stage prints the
end of its log and stops the job with a one-line error.

While a tool runs, its newest progress line (one with an ETA, as
run_pretraining.py, run_ner.py and create_pretraining_data.py log them) is
echoed at most once a minute, so a 40-minute pretraining stage is not
silent:

  [4] Pretrain the small ALBERT (LAMB, 13000 steps)
      $ python run_pretraining.py ...
      step 2101/13000: loss 6.8636, 5.379 steps/s, 172.1 examples/s, ETA 0:33:46
"""
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class StageError(SystemExit):
  """A stage failed (its log tail has been printed)."""


# The message of an absl/TF log line ("I1127 01:27:32.822152 1401 x.py:290]
# step 101/11000: ..., ETA 0:36:35"), when it reports progress.
_PROGRESS = re.compile(r"^[IWE]\d{4} [\d:.]+ +\d+ [^\]]+\] (.*\bETA \d.*)$")


class _ProgressReader(object):
  """Reads a growing log; keeps its newest progress message."""

  def __init__(self, path):
    self._file = open(path, encoding="utf-8", errors="replace")
    self._partial = ""
    self.latest = None

  def poll(self):
    text = self._partial + self._file.read()
    lines = text.split("\n")
    self._partial = lines.pop()  # an unfinished line waits for its end
    for line in lines:
      match = _PROGRESS.match(line.rstrip("\r"))
      if match:
        self.latest = match.group(1)
    return self.latest

  def close(self):
    self._file.close()


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

  def __init__(self, out_dir, job="demo", out=sys.stdout,
               progress_seconds=60.0):
    self.out_dir = out_dir
    # Echo a running tool's progress at most this often (<= 0: never).
    self.progress_seconds = progress_seconds
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
      proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
      try:
        self._wait(proc, log)
      except BaseException:  # Ctrl-C or our own error: leave no orphan
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
      with open(log, encoding="utf-8", errors="replace") as f:
        tail = f.read()[-3000:]
      sys.stderr.write(tail + "\n")
      raise StageError("%s: stage %d (%s) failed, exit %d; log: %s" % (
          self.job, self.number, title, proc.returncode, log))
    return log

  def _wait(self, proc, log):
    """Waits for `proc`, echoing the progress its log shows."""
    if self.progress_seconds <= 0:
      proc.wait()
      return
    reader = _ProgressReader(log)
    shown, last_echo = None, time.time()
    poll = min(5.0, self.progress_seconds)
    try:
      while True:
        try:
          proc.wait(timeout=poll)
          return
        except subprocess.TimeoutExpired:
          pass
        latest = reader.poll()
        if (latest and latest != shown and
            time.time() - last_echo >= self.progress_seconds):
          self.say("    " + latest)
          shown, last_echo = latest, time.time()
    finally:
      reader.close()
