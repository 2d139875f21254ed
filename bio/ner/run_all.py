r"""Fine-tunes on every BioNER dataset present and writes a Table V-style table.

For each dataset of bio.ner.datasets found under the data root (--data_dir,
$BIOALBERT_DATA_DIR or ../shared/data), runs bio.ner.runner with the same
flags as run_ner.py (train, select on dev, test) into
<output_dir>/<dataset>/, then writes <output_dir>/table_v.md: test
precision / recall / F1 (entity level, conlleval-compatible, in percent) per
dataset, with the strict IOB2 F1 and the selected step beside them.

  python -m bio.ner.run_all --albert_config_file=CONFIG.json \
    --spm_model_file=SPM.model --init_checkpoint=MODEL.ckpt \
    --output_dir=ner_runs [--datasets=NCBI-disease,BC5CDR-chem]

With --seeds=N (N > 1) each dataset is fine-tuned N times, with --seed
S, S+1, ... (S = --seed, or 1), into <output_dir>/<dataset>/seed-<seed>/,
and the table reports the mean ± sample standard deviation of each score
over the runs (the step column lists the selected steps).

A dataset that is absent is listed as such; one whose run fails is reported
(with its error) and the others still run; the exit status is non-zero if
any run failed.

With --train_split=train_dev each run trains on train and dev together for
--train_step steps and tests its last checkpoint (no dev selection), as
BioBERT's final runs.
"""
import dataclasses
import os
import statistics
import sys
import time

from absl import app
from absl import flags
from absl import logging

from albert import file_utils
from bio.ner import datasets
from bio.ner import runner

FLAGS = flags.FLAGS


def define_flags():
  """run_ner.py's flags plus --datasets (only when run as a script)."""
  flags.DEFINE_list(
      "datasets", None,
      "Datasets to run (default: every registry dataset present).")
  flags.DEFINE_integer(
      "seeds", 1, "Fine-tuning runs per dataset, with different seeds.")
  runner.define_flags()
  flags.adopt_module_key_flags(runner)

TABLE_FILE = "table_v.md"


def format_table(rows):
  """Markdown table from [(dataset, summary, list of summaries (seeds)
  or None, note)]."""
  lines = [
      "| Dataset | Entity types | P | R | F1 | strict F1 | step | note |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for name, test, note in rows:
    info = datasets.DATASETS.get(name, {})
    types_ = ", ".join(info.get("entity_types") or ["(untyped)"])
    if test is None:
      lines.append("| %s | %s | - | - | - | - | - | %s |" %
                   (name, types_, note))
      continue
    if isinstance(test, list):
      scores = [_mean_sd([t[key] for t in test]) for key in _SCORES]
      step = ", ".join(str(t.get("step", "-")) for t in test)
    else:
      scores = ["%.2f" % (100 * test[key]) for key in _SCORES]
      step = test.get("step", "-")
    lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
        (name, types_) + tuple(scores) + (step, note)))
  return "\n".join(lines) + "\n"


_SCORES = ("conlleval_precision", "conlleval_recall", "conlleval_f1",
           "strict_f1")


def _mean_sd(values):
  """'mean ± sd' in percent (sample standard deviation)."""
  values = [100 * v for v in values]
  sd = statistics.stdev(values) if len(values) > 1 else 0.0
  return "%.2f ± %.2f" % (statistics.mean(values), sd)


def run_all(base_opts, names=None, seeds=1):
  """Runs every dataset (`seeds` times each); returns the rows for
  `format_table`."""
  names = names or list(datasets.DATASETS)
  rows = []
  for name in names:
    _run_one(base_opts, name, rows, seeds)
    # Rewritten after every dataset: a long sweep shows its progress.
    file_utils.atomic_write(os.path.join(base_opts.output_dir, TABLE_FILE),
                            format_table(rows))
  return rows


def _seed_options(opts, seeds):
  """[options] of the runs of one dataset: one per seed when seeds > 1."""
  if seeds <= 1:
    return [opts]
  first = 1 if opts.seed is None else opts.seed
  return [dataclasses.replace(
      opts, seed=seed,
      output_dir=os.path.join(opts.output_dir, "seed-%d" % seed))
          for seed in range(first, first + seeds)]


def _run_one(base_opts, name, rows, seeds=1):
  """Runs one dataset (once per seed) and appends its row."""
  try:
    datasets.resolve_dataset_dir(name, base_opts.data_dir)
  except FileNotFoundError as e:
    logging.warning("%s: skipped, not available (%s)", name, e)
    rows.append((name, None, "not available"))
    return
  opts = dataclasses.replace(
      base_opts, dataset=name,
      output_dir=os.path.join(base_opts.output_dir, name), do_train=True,
      # Trained on dev too, a run has no dev to choose on: its last
      # checkpoint is tested.
      do_eval=base_opts.train_split == "train", do_predict=True)
  started = time.time()
  tests = []
  for run_opts in _seed_options(opts, seeds):
    logging.info("===== %s -> %s", name, run_opts.output_dir)
    try:
      tests.append(runner.run(run_opts)["test"])
    except runner.USER_ERRORS as e:
      logging.error("%s failed: %s", name, e)
      rows.append((name, None, "failed: %s" % str(e).replace("|", "/")))
      return
  minutes = (time.time() - started) / 60
  if seeds <= 1:
    rows.append((name, tests[0], "%.1f min" % minutes))
  else:
    rows.append((name, tests, "%d seeds, %.1f min" % (seeds, minutes)))


def main(_):
  logging.set_verbosity(logging.INFO)
  opts = runner.options_from_flags(FLAGS)
  if not opts.output_dir:
    sys.stderr.write("run_all_ner: error: --output_dir is required\n")
    sys.exit(1)
  unknown = [n for n in FLAGS.datasets or [] if n not in datasets.DATASETS]
  if unknown:
    sys.stderr.write("run_all_ner: error: unknown dataset(s) %s; known: %s\n"
                     % (", ".join(unknown),
                        ", ".join(sorted(datasets.DATASETS))))
    sys.exit(1)
  os.makedirs(opts.output_dir, exist_ok=True)
  # Datasets are found through the registry; --data_dir is the data root.
  if FLAGS.seeds < 1:
    sys.stderr.write("run_all_ner: error: --seeds must be >= 1\n")
    sys.exit(1)
  rows = run_all(opts, FLAGS.datasets, FLAGS.seeds)
  table = format_table(rows)
  file_utils.atomic_write(os.path.join(opts.output_dir, TABLE_FILE), table)
  print(table)
  if any(note.startswith("failed") for _, _, note in rows):
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
