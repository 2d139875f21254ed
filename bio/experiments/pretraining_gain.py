r"""The paper's claim in miniature: NER after biomedical pretraining vs none.

  python -m bio.experiments.pretraining_gain --output_dir=gain \
      [--datasets=NCBI-disease,BC5CDR-chem,BC2GM] [--seeds=3] [--data_dir=DIR]

Stages (each runs the project's own tool, logs to <output_dir>/logs/, and is
skipped on a re-run when its outputs exist, so an interrupted run resumes):
  1. corpus    `bio.experiments.corpus`: CHEMDNER abstracts, the training
               splits of the BioNER datasets and the PubMed sample, with
               every devel/test sentence of --exclude_from_corpus (default
               --datasets) kept out (checked again after the build and
               reported); --task_repeat puts the training text of those
               datasets in N times.
  2. vocab     a SentencePiece vocabulary of --vocab_size pieces on it.
  3. records   create_pretraining_data.py, per-shard mode.
  4. pretrain  run_pretraining.py: a small ALBERT (`SMALL_CONFIG`,
               --num_hidden_layers deep, --hidden_size and --embedding_size
               wide) from scratch, LAMB, on sequences of --max_seq_length
               pieces; then `bio.experiments.attention` checks whether its
               attention collapsed (pretrain/attention.json; a collapsed
               run stalled on the masked-LM plateau, README section 9).
               With --pretrain_check_step=N the run first stops at step N
               for that check (pretrain/attention-N.json); a collapsed run
               is moved to pretrain-collapsed-K/ and pretraining starts
               again with the next --pretrain_seed, at most
               --pretrain_restarts times (the time estimate counts none).
  5. fine-tune run_ner.py on each dataset, for each seed, twice with the
               same budget: from scratch ("scratch") and from the pretrained
               checkpoint ("pretrained"), on --ner_max_seq_length pieces;
               every --ner_eval_every steps the checkpoint is scored on
               dev, the best is tested.
  6. report    results.md (mean ± sd over seeds of dev and test entity F1
               per arm, and the gain; the pretrained model's masked-LM
               accuracy and attention verdict), results.json (every run,
               settings, corpus checks) and dev_f1.png (dev F1 against
               fine-tuning steps, both arms; needs the `plot` extra), of
               every dataset and seed finished in the directory, earlier
               invocations' included.

Outputs in --output_dir: corpus/, vocab/, albert_config.json (and
albert_config_ner.json, fine-tuning's, with --ner_dropout > 0), records/,
pretrain/, ner/<dataset>/<arm>/seed-<N>/ (run_ner.py run directories),
experiment.json (the settings; a re-run with other settings is refused),
results.md, results.json, dev_f1.png, logs/. The directory is locked while
a run is in it.

The recipe (`Recipe`) defaults are the ones chosen by measurement on a
2-core CPU (README, "Pretraining gain"). The paper pretrains ALBERT-base on
all of PubMed and PMC for days on TPUs; this is the same pipeline at a
size that runs in about two hours on two CPU cores (80 minutes of
pretraining, 7 per fine-tuning run; README, section 9).
"""
import dataclasses
import json
import os
import re
import statistics
import sys

from absl import app
from absl import flags

from albert import file_utils
from bio import paths
from bio.experiments import corpus as corpus_lib
from bio.experiments import stages as stages_lib
from bio.ner import datasets
from bio.ner import decoding

ARMS = ("scratch", "pretrained")
RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
PLOT_FILE = "dev_f1.png"
# Batches the pretraining stage's own eval reads (results.md says so).
PRETRAIN_EVAL_BATCHES = 20
SETTINGS_FILE = "experiment.json"

# A small ALBERT: factorized embeddings and one shared layer group, as the
# real configs, at a size that trains in minutes on two CPU cores.
SMALL_CONFIG = {
    "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "embedding_size": 64, "hidden_size": 128,
    "initializer_range": 0.02, "intermediate_size": 512,
    "max_position_embeddings": 512, "num_attention_heads": 4,
    "num_hidden_layers": 4, "num_hidden_groups": 1, "net_structure_type": 0,
    "gap_size": 0, "num_memory_blocks": 0, "inner_group_num": 1,
    "down_scale_factor": 1, "type_vocab_size": 2,
}

# Seconds per step of SMALL_CONFIG on this project's 2-core CPU (batch 32,
# sequence 128, no other load), for the estimate printed before a run; the
# fine-tuning stage re-estimates from the runs it has timed.
_PRETRAIN_STEP_S = 0.6
# Per vocabulary piece and masked position of a batch-32 step (2 layers,
# sequence 64: 7.7 steps/s with 2,000 pieces, 4.2-4.9 with 16,000).
_MLM_OUTPUT_S = 7e-7
_NER_STEP_S = 0.3
_NER_EVAL_S = 8.0


@dataclasses.dataclass(frozen=True)
class Recipe(object):
  """Everything that decides the numbers (recorded in experiment.json)."""
  vocab_size: int = 2000
  # Layers of SMALL_CONFIG (one shared group at any depth).
  num_hidden_layers: int = 4
  # Width: the feed-forward layer is 4x hidden_size, as in every ALBERT
  # config; the 4 attention heads stay.
  hidden_size: int = SMALL_CONFIG["hidden_size"]
  embedding_size: int = SMALL_CONFIG["embedding_size"]
  # Of the pretraining records; fine-tuning has its own (NCBI-disease: 21%
  # of training sentences are longer than 64 pieces of the 2,000 vocabulary).
  max_seq_length: int = 128
  ner_max_seq_length: int = 128
  dupe_factor: int = 2
  max_predictions_per_seq: int = 20
  pretrain_steps: int = 8000
  pretrain_batch_size: int = 32
  pretrain_learning_rate: float = 5e-3
  # run_pretraining.py --seed (initialisation and data order); 0: unseeded,
  # a different model each run. Of three unseeded runs at hidden 256, lr
  # 1e-2, one left the loss plateau (~6.8) near step 4,000; the others had
  # not by steps 6,100 and 8,100.
  pretrain_seed: int = 0
  # Stop pretraining at this step, check its attention there and, when a
  # head has collapsed, restart from nothing (at most pretrain_restarts
  # times) with the next seed; 0: no early check. Seeded runs at hidden
  # 256, lr 1e-2 that stalled had collapsed heads by step 2,000 (README,
  # section 9).
  pretrain_check_step: int = 0
  pretrain_restarts: int = 1
  ner_steps: int = 1500
  ner_eval_every: int = 250
  ner_batch_size: int = 32
  ner_learning_rate: float = 1e-3
  # At lr 1e-3 a warm-up of 50-100 steps left both arms at the all-O prior
  # (dev F1 0); 320 (run_ner's default) trains (README, section 9).
  ner_warmup_steps: int = 320
  # Hidden and attention dropout of fine-tuning only (pretraining keeps
  # SMALL_CONFIG's none). 0.1 took a 16,000-piece model from 52.1 to 57.7
  # dev F1 at 2,000 steps (README, section 9, "Towards the moonshot").
  ner_dropout: float = 0.0
  # run_ner.py's --decode (bio.ner.decoding): viterbi took a checkpoint
  # from 58.8 to 63.0 test F1 (README, section 9, "Towards the moonshot");
  # crf trains a CRF head as well.
  ner_decode: str = "argmax"
  # Copies of the evaluated datasets' training text in the corpus
  # (bio.experiments.corpus --task_repeat; 1: once, like the rest).
  task_repeat: int = 1
  precision: str = "fp32"

  def config(self):
    """The model's albert_config (without vocab_size)."""
    return dict(SMALL_CONFIG, num_hidden_layers=self.num_hidden_layers,
                hidden_size=self.hidden_size,
                intermediate_size=4 * self.hidden_size,
                embedding_size=self.embedding_size)

  def ner_config(self):
    """The albert_config fine-tuning uses (without vocab_size)."""
    return dict(self.config(), hidden_dropout_prob=self.ner_dropout,
                attention_probs_dropout_prob=self.ner_dropout)

  def ner_warmup(self):
    """The warm-up a run gets: never longer than the run."""
    return min(self.ner_warmup_steps, self.ner_steps)


@dataclasses.dataclass(frozen=True)
class ExperimentOptions(object):
  output_dir: str
  datasets: tuple = ("NCBI-disease",)
  seeds: int = 3
  first_seed: int = 1
  # {dataset: seeds} for datasets run with other than `seeds` seeds.
  dataset_seeds: tuple = ()
  # Datasets whose devel/test text is kept out of the corpus (default:
  # `datasets`); every evaluated dataset must be among them.
  exclude: tuple = ()
  data_dir: str = None
  recipe: Recipe = Recipe()
  sources: tuple = corpus_lib.SOURCES

  def seed_list(self, dataset):
    n = dict(self.dataset_seeds).get(dataset, self.seeds)
    return list(range(self.first_seed, self.first_seed + n))

  def excluded(self):
    return tuple(self.exclude or self.datasets)

  def settings(self):
    """What the corpus and the pretrained model depend on. The datasets and
    seeds fine-tuned may change between runs in one directory: each run has
    its own run directory."""
    return {"exclude_from_corpus": list(self.excluded()),
            "sources": list(self.sources),
            "recipe": dataclasses.asdict(self.recipe),
            "config": self.recipe.config()}


@dataclasses.dataclass(frozen=True)
class Layout(object):
  """Where each stage's outputs go."""
  out: str

  def join(self, *parts):
    return os.path.join(self.out, *parts)

  @property
  def corpus(self):
    return self.join("corpus")

  def spm_prefix(self, vocab_size):
    return self.join("vocab", "bio%d" % vocab_size)

  @property
  def config_file(self):
    return self.join("albert_config.json")

  def ner_config_file(self, recipe):
    """Fine-tuning's albert_config: the pretraining one, unless the recipe
    fine-tunes with dropout (run_ner.py records the file's name, so runs
    without dropout keep the settings older versions gave them)."""
    if recipe.ner_config() == recipe.config():
      return self.config_file
    return self.join("albert_config_ner.json")

  @property
  def records(self):
    return self.join("records")

  @property
  def pretrain(self):
    return self.join("pretrain")

  @property
  def pretrain_results(self):
    return os.path.join(self.pretrain, "eval_results.txt")

  @property
  def attention(self):
    return os.path.join(self.pretrain, "attention.json")

  def early_attention(self, step, pretrain_dir=None):
    """The attention check of the early checkpoint at `step`."""
    return os.path.join(pretrain_dir or self.pretrain,
                        "attention-%d.json" % step)

  def collapsed_run(self, attempt):
    """Where the `attempt`-th (1, 2, ...) pretraining run whose attention
    collapsed early is kept."""
    return self.join("pretrain-collapsed-%d" % attempt)

  def collapsed_runs(self):
    """The kept collapsed runs, in order."""
    found = []
    while os.path.isdir(self.collapsed_run(len(found) + 1)):
      found.append(self.collapsed_run(len(found) + 1))
    return found

  def ner(self, dataset, arm, seed):
    return self.join("ner", dataset, arm, "seed-%d" % seed)

  def ner_results(self, dataset, arm, seed):
    return os.path.join(self.ner(dataset, arm, seed), "test_results.json")

  def record_files(self, report):
    """The TFRecord file of each corpus shard of `report`."""
    return [os.path.join(self.records, n.replace(".txt", ".tfrecord"))
            for n in report["shards"]]

  def records_done(self):
    """True when the corpus report's shards all have records."""
    if not os.path.exists(os.path.join(self.corpus, corpus_lib.REPORT_FILE)):
      return False
    return all(os.path.exists(p) for p in self.record_files(
        corpus_lib.read_report(self.corpus)))


class ExperimentError(Exception):
  """A user error: clashing settings, missing data."""


# ---------------------------------------------------------------------------
# Settings and estimates


def check_recipe(opts):
  """Refuses bad recipe values and evaluating a dataset whose devel/test
  text the corpus may hold, before anything is written."""
  r = opts.recipe
  try:
    decoding.check_decoder(r.ner_decode, "--ner_decode")
  except ValueError as e:
    raise ExperimentError(str(e)) from e
  if r.pretrain_seed < 0:
    raise ExperimentError("--pretrain_seed must be 0 (unseeded) or positive, "
                          "not %d" % r.pretrain_seed)
  if r.pretrain_check_step and not (
      0 < r.pretrain_check_step < r.pretrain_steps):
    raise ExperimentError(
        "--pretrain_check_step=%d must be 0 (no early check) or between 1 "
        "and --pretrain_steps=%d" % (r.pretrain_check_step, r.pretrain_steps))
  if r.pretrain_restarts < 0:
    raise ExperimentError("--pretrain_restarts must be 0 or more, not %d" %
                          r.pretrain_restarts)
  if r.task_repeat < 1:
    raise ExperimentError("--task_repeat must be at least 1, not %d" %
                          r.task_repeat)
  heads = SMALL_CONFIG["num_attention_heads"]
  if r.hidden_size < heads or r.hidden_size % heads or r.embedding_size < 1:
    raise ExperimentError(
        "--hidden_size=%d, --embedding_size=%d: hidden_size must be a "
        "positive multiple of the %d attention heads and embedding_size at "
        "least 1" % (r.hidden_size, r.embedding_size, heads))
  leaky = [d for d in opts.datasets if d not in opts.excluded()]
  if leaky:
    raise ExperimentError(
        "--datasets: %s is not in --exclude_from_corpus (%s), so its devel/"
        "test text may be in the corpus; list it there, in a new "
        "--output_dir" % (", ".join(leaky), ", ".join(opts.excluded())))


def check_settings(opts):
  """Records the settings, or refuses a directory made with others; refuses
  bad recipe values and a dataset whose devel/test text the corpus may
  hold (`check_recipe`)."""
  check_recipe(opts)
  path = os.path.join(opts.output_dir, SETTINGS_FILE)
  wanted = opts.settings()
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      found = json.load(f)
    if _backfill(found) != wanted:
      raise ExperimentError(
          "%s was made with other settings (%s); use another --output_dir" %
          (opts.output_dir, ", ".join(
              corpus_lib.setting_differences(found, wanted))))
    return
  file_utils.atomic_write_json(path, wanted)


def _backfill(found):
  """An experiment.json written before a recipe field existed, with the
  value the field had then (the run used it), so upgrading never refuses an
  unchanged experiment."""
  recipe = found.get("recipe", {})
  recipe.setdefault("num_hidden_layers", SMALL_CONFIG["num_hidden_layers"])
  recipe.setdefault("ner_max_seq_length", recipe.get("max_seq_length"))
  recipe.setdefault("ner_dropout", 0.0)
  recipe.setdefault("ner_decode", "argmax")
  recipe.setdefault("task_repeat", 1)
  recipe.setdefault("pretrain_seed", 0)
  recipe.setdefault("hidden_size", SMALL_CONFIG["hidden_size"])
  recipe.setdefault("embedding_size", SMALL_CONFIG["embedding_size"])
  recipe.setdefault("pretrain_check_step", 0)
  recipe.setdefault("pretrain_restarts", Recipe.pretrain_restarts)
  return found


def estimate_seconds(opts, words=3.5e6, layout=None):
  """A rough wall-time estimate on a 2-core CPU, per stage; with `layout`,
  only of the stages and runs not yet done there."""
  r = opts.recipe
  runs = [(d, a, s) for d in opts.datasets for s in opts.seed_list(d)
          for a in ARMS]
  done = {}
  if layout is not None:
    runs = [x for x in runs if not os.path.exists(layout.ner_results(*x))]
    done = {
        "corpus": os.path.exists(os.path.join(layout.corpus,
                                              corpus_lib.REPORT_FILE)),
        "vocab": os.path.exists(layout.spm_prefix(r.vocab_size) + ".model"),
        "pretrain": os.path.exists(layout.pretrain_results)}
    done["records"] = done["pretrain"] or layout.records_done()
    done["fine-tune"] = not runs
  evals = r.ner_steps // r.ner_eval_every + 1
  # Wider is slower, less than in proportion on this CPU (hidden 256: about
  # half the steps/s of 128).
  depth = (r.num_hidden_layers / float(SMALL_CONFIG["num_hidden_layers"]) *
           r.hidden_size / float(SMALL_CONFIG["hidden_size"]))
  estimate = {
      "corpus": 30.0, "vocab": 60.0,
      "records": 1.5e-5 * words * r.dupe_factor * r.max_seq_length / 128,
      "pretrain": r.pretrain_steps * r.pretrain_batch_size / 32.0 * (
          _PRETRAIN_STEP_S * depth * r.max_seq_length / 128.0
          + _MLM_OUTPUT_S * r.vocab_size * r.max_predictions_per_seq),
      "fine-tune": len(runs) * (
          (r.ner_steps * _NER_STEP_S * r.ner_batch_size / 32.0
           + evals * _NER_EVAL_S) * depth + 10),
  }
  return {k: v for k, v in estimate.items() if not done.get(k)}


def _minutes(seconds):
  return "%.0f min" % max(1, round(seconds / 60.0))


# ---------------------------------------------------------------------------
# Stages


def build_corpus(stages, opts, layout):
  copts = corpus_lib.CorpusOptions(
      output_dir=layout.corpus, evaluate=opts.excluded(),
      sources=tuple(opts.sources), data_dir=opts.data_dir,
      task_repeat=opts.recipe.task_repeat)
  stages.call("Build the pretraining corpus (leak-checked)",
              lambda: corpus_lib.build(copts, log=lambda s: stages.say(
                  "    " + s)),
              os.path.join(layout.corpus, corpus_lib.REPORT_FILE))
  return corpus_lib.read_report(layout.corpus)


def train_vocabulary(stages, opts, layout):
  prefix = layout.spm_prefix(opts.recipe.vocab_size)
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  stages.run("Train the SentencePiece vocabulary", [
      sys.executable, "-m", "albert.train_spm",
      "--input=%s/corpus-*.txt" % layout.corpus, "--model_prefix=" + prefix,
      "--vocab_size=%d" % opts.recipe.vocab_size], prefix + ".model")
  return prefix


def build_records(stages, opts, layout, report, spm_prefix):
  r = opts.recipe
  file_utils.atomic_write_json(layout.config_file,
                               dict(r.config(), vocab_size=r.vocab_size))
  outputs = layout.record_files(report)
  stages.run("Build pretraining TFRecords", [
      sys.executable, "create_pretraining_data.py",
      "--input_file=%s/corpus-*.txt" % layout.corpus,
      "--output_dir=" + layout.records,
      "--spm_model_file=" + spm_prefix + ".model",
      "--vocab_file=" + spm_prefix + ".vocab",
      "--max_seq_length=%d" % r.max_seq_length,
      "--max_predictions_per_seq=%d" % r.max_predictions_per_seq,
      "--dupe_factor=%d" % r.dupe_factor, "--num_workers=2"], outputs,
             name="records")
  return outputs


def attempt_seed(recipe, attempt):
  """run_pretraining.py's --seed for the `attempt`-th run (0 the first; a
  restart after a collapse takes the next seed), or None: unseeded."""
  return recipe.pretrain_seed + attempt if recipe.pretrain_seed else None


def pretrain(stages, opts, layout, records, spm_prefix, seed=None,
             stop_at=None):
  """Stage 4: run_pretraining.py, to the end or (`stop_at`) part-way
  through the schedule; returns the checkpoint it ends with."""
  r = opts.recipe
  end = stop_at or r.pretrain_steps
  checkpoint = os.path.join(layout.pretrain, "model.ckpt-%d" % end)
  if stop_at:
    title = "Pretrain to step %d of %d, then check" % (stop_at,
                                                      r.pretrain_steps)
    done = layout.early_attention(stop_at)
  else:
    title = "Pretrain the small ALBERT (LAMB, %d steps)" % r.pretrain_steps
    done = layout.pretrain_results
  stages.run(title, [
      sys.executable, "run_pretraining.py",
      "--albert_config_file=" + layout.config_file,
      "--input_file=" + ",".join(records),
      "--spm_model_file=" + spm_prefix + ".model",
      "--output_dir=" + layout.pretrain, "--do_train"] + (
          ["--stop_at_step=%d" % stop_at] if stop_at else ["--do_eval"]) + [
      "--train_batch_size=%d" % r.pretrain_batch_size,
      "--eval_batch_size=64", "--optimizer=lamb",
      "--learning_rate=%g" % r.pretrain_learning_rate,
      "--max_seq_length=%d" % r.max_seq_length,
      "--max_predictions_per_seq=%d" % r.max_predictions_per_seq,
      "--num_train_steps=%d" % r.pretrain_steps,
      "--num_warmup_steps=%d" % (r.pretrain_steps // 10),
      "--save_checkpoints_steps=%d" % min(1000, r.pretrain_steps),
      "--iterations_per_loop=100",
      "--max_eval_steps=%d" % PRETRAIN_EVAL_BATCHES,
      "--precision=" + r.precision] + (
          ["--seed=%d" % seed] if seed else []),
      done, name="pretrain")
  return checkpoint


def check_attention(stages, opts, layout, records, checkpoint, output=None,
                    title="Check the pretrained model's attention"):
  """Stage 4b: `bio.experiments.attention` on a pretraining checkpoint;
  says whether its attention collapsed (the way a run stalls on the
  masked-LM plateau, README section 9). Returns the collapsed heads."""
  output = output or layout.attention
  stages.run(title, [
      sys.executable, "-m", "bio.experiments.attention",
      "--albert_config_file=" + layout.config_file,
      "--init_checkpoint=" + checkpoint,
      "--input_file=" + records[0],
      "--max_seq_length=%d" % opts.recipe.max_seq_length,
      "--output_file=" + output], output, name="attention")
  found = _load_json(output)
  stages.say("    attention: " + found["verdict"])
  return found["collapsed"]


def pretrain_until_healthy(stages, opts, layout, records, spm_prefix):
  """Stage 4 with --pretrain_check_step: each run stops at that step for an
  attention check; a collapsed run is moved aside (pretrain-collapsed-N/)
  and pretraining starts again with the next seed, at most
  --pretrain_restarts times; a healthy run (or the last allowed) goes on
  to the end. Returns the final checkpoint."""
  r = opts.recipe
  step = r.pretrain_check_step
  while True:
    attempt = len(layout.collapsed_runs())
    seed = attempt_seed(r, attempt)
    if not step or os.path.exists(layout.pretrain_results):
      break
    early = pretrain(stages, opts, layout, records, spm_prefix, seed,
                     stop_at=step)
    collapsed = check_attention(
        stages, opts, layout, records, early, layout.early_attention(step),
        title="Check the attention at step %d" % step)
    if not collapsed:
      break
    if attempt >= r.pretrain_restarts:
      stages.say("    collapsed, and no restart left (--pretrain_restarts="
                 "%d): pretraining goes on" % r.pretrain_restarts)
      break
    os.rename(layout.pretrain, layout.collapsed_run(attempt + 1))
    stages.say("    collapsed: kept in %s; pretraining starts again%s" % (
        layout.collapsed_run(attempt + 1),
        " with --seed=%d" % attempt_seed(r, attempt + 1) if seed else ""))
  return pretrain(stages, opts, layout, records, spm_prefix, seed)


def ner_argv(opts, layout, dataset, arm, seed, spm_prefix, checkpoint):
  """run_ner.py's command line for one run of one arm."""
  r = opts.recipe
  argv = [
      sys.executable, "run_ner.py", "--dataset=" + dataset,
      "--albert_config_file=" + layout.ner_config_file(r),
      "--spm_model_file=" + spm_prefix + ".model",
      "--output_dir=" + layout.ner(dataset, arm, seed),
      "--do_train", "--do_eval", "--do_predict",
      "--max_seq_length=%d" % r.ner_max_seq_length,
      "--train_batch_size=%d" % r.ner_batch_size, "--eval_batch_size=64",
      "--predict_batch_size=64",
      "--learning_rate=%g" % r.ner_learning_rate,
      "--train_step=%d" % r.ner_steps,
      "--warmup_step=%d" % r.ner_warmup(),
      "--save_checkpoints_steps=%d" % r.ner_eval_every,
      "--keep_checkpoint_max=2", "--iterations_per_loop=100",
      "--seed=%d" % seed, "--precision=" + r.precision,
      "--decode=" + r.ner_decode]
  if opts.data_dir:
    argv.append("--data_dir=" + opts.data_dir)
  if arm == "pretrained":
    argv.append("--init_checkpoint=" + checkpoint)
  return argv


def fine_tune_all(stages, opts, layout, spm_prefix, checkpoint):
  r = opts.recipe
  file_utils.atomic_write_json(layout.ner_config_file(r),
                               dict(r.ner_config(), vocab_size=r.vocab_size))
  runs = [(d, s, a) for d in opts.datasets for s in opts.seed_list(d)
          for a in ARMS]
  timed = []  # wall seconds of the runs made now
  for n, (dataset, seed, arm) in enumerate(runs):
    if timed:
      stages.say("\n    fine-tuning run %d/%d; about %s left" % (
          n + 1, len(runs), _minutes(statistics.fmean(timed) *
                                     (len(runs) - n))))
    done = layout.ner_results(dataset, arm, seed)
    title = "Fine-tune %s, %s, seed %d" % (dataset, arm, seed)
    if stages.run(title, ner_argv(opts, layout, dataset, arm, seed,
                                  spm_prefix, checkpoint), done,
                  name="ner-%s-%s-%d" % (dataset, arm, seed)):
      timed.append(stages.seconds[title])
  return runs


# ---------------------------------------------------------------------------
# Results


def _load_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def read_run(run_dir):
  """{dev_f1, test_f1, test_precision, test_recall, chosen_step, curve}."""
  dev = _load_json(os.path.join(run_dir, "dev_results.json"))
  test = _load_json(os.path.join(run_dir, "test_results.json"))
  curve = sorted((rec["step"], rec["conlleval_f1"])
                 for rec in dev["records"])
  return {"dev_f1": dev["chosen"]["conlleval_f1"],
          "chosen_step": dev["chosen"]["step"],
          "test_f1": test["conlleval_f1"],
          "test_precision": test["conlleval_precision"],
          "test_recall": test["conlleval_recall"],
          "curve": curve}


def mean_sd(values):
  values = list(values)
  sd = statistics.stdev(values) if len(values) > 1 else 0.0
  return statistics.fmean(values), sd


def finished_runs(opts, layout):
  """{dataset: [seed, ...]} of every dataset and seed of the directory
  whose runs are finished in both arms: this invocation's and those of
  earlier ones (settings are the same, checked), so that adding a dataset
  later keeps the others in the report."""
  found = {}
  root = layout.join("ner")
  names = set(opts.datasets)
  if os.path.isdir(root):
    names.update(os.listdir(root))
  for dataset in sorted(names):
    seeds = set(opts.seed_list(dataset)) if dataset in opts.datasets else set()
    arm_dir = os.path.join(root, dataset, ARMS[0])
    for name in os.listdir(arm_dir) if os.path.isdir(arm_dir) else ():
      match = re.fullmatch(r"seed-(\d+)", name)
      if match and all(os.path.exists(layout.ner_results(
          dataset, arm, int(match.group(1)))) for arm in ARMS):
        seeds.add(int(match.group(1)))
    if seeds:
      found[dataset] = sorted(seeds)
  return found


def summarize(opts, layout):
  """{dataset: {arm: {"runs": {seed: run}, "dev": (mean, sd), "test": ...}}
  plus the gains (pretrained minus scratch, of the means), for every
  finished dataset and seed of the directory (`finished_runs`)."""
  out = {}
  for dataset, seeds in finished_runs(opts, layout).items():
    arms = {}
    for arm in ARMS:
      runs = {}
      for seed in seeds:
        runs[seed] = read_run(layout.ner(dataset, arm, seed))
      arms[arm] = {"runs": runs,
                   "dev": mean_sd(r["dev_f1"] for r in runs.values()),
                   "test": mean_sd(r["test_f1"] for r in runs.values())}
    arms["gain"] = {
        split: arms["pretrained"][split][0] - arms["scratch"][split][0]
        for split in ("dev", "test")}
    out[dataset] = arms
  return out


def _pct(mean_and_sd, runs):
  if runs < 2:  # no spread to show
    return "%.1f" % (100 * mean_and_sd[0])
  return "%.1f ± %.1f" % (100 * mean_and_sd[0], 100 * mean_and_sd[1])


def pretrained_checks(layout, recipe):
  """The pretrained model's own eval (masked-LM accuracy and loss) and its
  attention check, as far as they exist; the runs restarted after an early
  collapse, and the seed of the one kept."""
  out = {}
  collapsed = layout.collapsed_runs()
  if collapsed:
    out["restarts"] = [
        {"run": os.path.basename(d), "seed": attempt_seed(recipe, i),
         "verdict": _load_json(layout.early_attention(
             recipe.pretrain_check_step, d))["verdict"]}
        for i, d in enumerate(collapsed)]
  out["seed"] = attempt_seed(recipe, len(collapsed))
  if os.path.exists(layout.pretrain_results):
    with open(layout.pretrain_results, encoding="utf-8") as f:
      for line in f:
        key, _, value = line.partition(" = ")
        if key in ("masked_lm_accuracy", "masked_lm_loss"):
          out[key] = float(value)
  if os.path.exists(layout.attention):
    found = _load_json(layout.attention)
    out["attention"] = found["verdict"]
    out["collapsed_heads"] = len(found["collapsed"])
  return out


def _restarts_line(recipe, checks):
  restarts = checks.get("restarts")
  if not restarts:
    return None
  return ("Pretraining restarted %d time%s: at step %d the attention of %s "
          "had collapsed (%s); the run reported is %s." % (
              len(restarts), "" if len(restarts) == 1 else "s",
              recipe.pretrain_check_step, ", ".join(
                  "the run with seed %d" % x["seed"] if x["seed"] else
                  "an unseeded run" for x in restarts),
              "; ".join(x["verdict"].rstrip(".") for x in restarts),
              _seed_name(checks.get("seed"))))


def _seed_name(seed):
  return "seed %d" % seed if seed else "unseeded"


def _pretrained_line(checks):
  parts = []
  if "masked_lm_accuracy" in checks and "masked_lm_loss" in checks:
    parts.append("masked-LM accuracy %.3f, loss %.2f (its eval on %d "
                 "batches of the pretraining records)" % (
                     checks["masked_lm_accuracy"], checks["masked_lm_loss"],
                     PRETRAIN_EVAL_BATCHES))
  if "attention" in checks:
    parts.append("attention: " + checks["attention"].rstrip(".") + (
        "; the run stalled on the masked-LM plateau: try another "
        "--pretrain_seed, --pretrain_check_step (restart a run that "
        "collapses early) or a lower --pretrain_learning_rate (README, "
        "section 9)" if checks["collapsed_heads"] else ""))
  return ("Pretrained model: %s." % "; ".join(parts)) if parts else None


def _seed_text(recipe, checks):
  text = _seed_name(checks.get("seed", attempt_seed(recipe, 0)))
  if recipe.pretrain_check_step:
    text += ", attention checked at step %d (up to %d restart%s)" % (
        recipe.pretrain_check_step, recipe.pretrain_restarts,
        "" if recipe.pretrain_restarts == 1 else "s")
  return text


def markdown(opts, summary, corpus_check, pretrained=None):
  r = opts.recipe
  lines = [
      "# Pretraining gain: entity-level F1 (%), mean ± sd over seeds", "",
      "| dataset | arm | dev F1 | test F1 | seeds | chosen steps |",
      "|---|---|---|---|---|---|"]
  for dataset, arms in summary.items():
    for arm in ARMS:
      runs = arms[arm]["runs"]
      steps = ", ".join(str(run["chosen_step"]) for run in runs.values())
      lines.append("| %s | %s | %s | %s | %s | %s |" % (
          dataset, arm, _pct(arms[arm]["dev"], len(runs)),
          _pct(arms[arm]["test"], len(runs)),
          ", ".join(str(s) for s in runs), steps))
    lines.append("| %s | **gain** | **%+.1f** | **%+.1f** | | |" % (
        dataset, 100 * arms["gain"]["dev"], 100 * arms["gain"]["test"]))
  lines += [
      "", "Recipe: small ALBERT (embedding %d, hidden %d, %d shared layers), "
      "vocabulary %d; pretraining %d LAMB steps of batch %d at lr %g, "
      "sequence %d, %s; fine-tuning %d steps of batch %d at lr %g, "
      "sequence %d, dropout %g, after %d warm-up steps (both arms), dev "
      "scored every %d steps, labels decoded by %s, precision %s." % (
          r.embedding_size, r.hidden_size, r.num_hidden_layers,
          r.vocab_size, r.pretrain_steps,
          r.pretrain_batch_size, r.pretrain_learning_rate, r.max_seq_length,
          _seed_text(r, pretrained or {}),
          r.ner_steps, r.ner_batch_size, r.ner_learning_rate,
          r.ner_max_seq_length, r.ner_dropout,
          r.ner_warmup(), r.ner_eval_every, r.ner_decode, r.precision),
      "Corpus: %(documents)d documents, %(sentences)d sentences, %(words)d "
      "words; %(dropped_leaks)d sentences dropped for sharing text with an "
      "evaluated devel/test sentence." % corpus_check["total"] + (
          " The training text of %s is in it %d times (%d words of "
          "copies)." % (", ".join(opts.excluded()), r.task_repeat,
                        corpus_check["total"].get("repeated_words", 0))
          if r.task_repeat > 1 else ""),
      "Leak check after the build: %d of the %d distinct devel/test "
      "sentences of %s appear as a corpus line." % (
          corpus_check["found"], corpus_check["checked"],
          ", ".join(opts.excluded()))]
  for line in (_restarts_line(r, pretrained or {}),
               _pretrained_line(pretrained or {})):
    if line:
      lines.append(line)
  lines.append("")
  return "\n".join(lines)


def verify_corpus(layout, opts):
  """Counts evaluated devel/test sentences found verbatim (normalised) as
  corpus lines: an independent check of the leak guard."""
  report = corpus_lib.read_report(layout.corpus)
  _, texts = corpus_lib.evaluation_sets(opts.excluded(), opts.data_dir)
  wanted = {corpus_lib.normalize(t) for t in texts}
  wanted.discard("")
  found = set()
  for name in report["shards"]:
    with open(os.path.join(layout.corpus, name), encoding="utf-8") as f:
      for line in f:
        key = corpus_lib.normalize(line)
        if key in wanted:
          found.add(key)
  return {"total": report["total"], "checked": len(wanted),
          "found": len(found)}


def plot(summary, path):
  """dev F1 against fine-tuning steps, one panel per dataset; thin lines
  per seed, thick for the mean. Returns False without matplotlib."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  fig, axes = pyplot.subplots(1, len(summary), squeeze=False,
                              figsize=(5 * len(summary), 3.6))
  for ax, (dataset, arms) in zip(axes[0], summary.items()):
    for arm, color in zip(ARMS, ("tab:gray", "tab:blue")):
      curves = [run["curve"] for run in arms[arm]["runs"].values()]
      for curve in curves:
        ax.plot([s for s, _ in curve], [100 * f for _, f in curve],
                color=color, alpha=0.3, linewidth=0.8)
      steps = sorted({s for curve in curves for s, _ in curve})
      means = [statistics.fmean(f for curve in curves for s2, f in curve
                                if s2 == s) for s in steps]
      ax.plot(steps, [100 * m for m in means], color=color, linewidth=2,
              label=arm)
    ax.set_title(dataset)
    ax.set_xlabel("fine-tuning steps")
    ax.set_ylabel("dev entity F1 (%)")
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  with file_utils.atomic_file(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100)
  pyplot.close(fig)
  return True


def write_report(opts, layout, stages):
  summary = summarize(opts, layout)
  check = verify_corpus(layout, opts)
  pretrained = pretrained_checks(layout, opts.recipe)
  text = markdown(opts, summary, check, pretrained)
  file_utils.atomic_write(layout.join(RESULTS_MD), text)
  file_utils.atomic_write_json(layout.join(RESULTS_JSON), {
      "settings": opts.settings(),
      "seeds": {d: sorted(arms["scratch"]["runs"])
                for d, arms in summary.items()},
      "corpus_check": check,
      "pretrained": pretrained,
      "results": summary})
  plotted = plot(summary, layout.join(PLOT_FILE))
  stages.say("\n" + text)
  stages.say("results: %s%s" % (layout.join(RESULTS_MD), (
      ", plot: " + layout.join(PLOT_FILE)) if plotted else
      " (no plot: install the `plot` extra, pip install '.[plot]')"))
  return summary


# ---------------------------------------------------------------------------
# The job


def prepare_pretrained(stages, opts, layout):
  """Stages 1-4; returns (spm_prefix, pretrained checkpoint prefix)."""
  report = build_corpus(stages, opts, layout)
  spm_prefix = train_vocabulary(stages, opts, layout)
  records = build_records(stages, opts, layout, report, spm_prefix)
  checkpoint = pretrain_until_healthy(stages, opts, layout, records,
                                      spm_prefix)
  check_attention(stages, opts, layout, records, checkpoint)
  return spm_prefix, checkpoint


def run(opts, out=sys.stdout, then=None, job="pretraining_gain"):
  """Runs (or resumes) the experiment; returns the summary. `then(stages,
  layout, summary)` runs afterwards, still under the directory lock."""
  check_recipe(opts)
  os.makedirs(opts.output_dir, exist_ok=True)
  with file_utils.DirLock(opts.output_dir):
    check_settings(opts)
    layout = Layout(os.path.abspath(opts.output_dir))
    stages = stages_lib.Stages(layout.out, job=job, out=out)
    estimate = estimate_seconds(opts, layout=layout)
    if estimate:
      stages.say("Estimated time on a 2-core CPU: %s (%s)" % (
          _minutes(sum(estimate.values())), ", ".join(
              "%s %s" % (k, _minutes(v)) for k, v in estimate.items())))
    spm_prefix, checkpoint = prepare_pretrained(stages, opts, layout)
    fine_tune_all(stages, opts, layout, spm_prefix, checkpoint)
    summary = write_report(opts, layout, stages)
    if then is not None:
      then(stages, layout, summary)
    return summary


def define_flags():
  defaults = Recipe()
  flags.DEFINE_string("output_dir", "pretraining_gain",
                      "Where every artifact goes.")
  flags.DEFINE_string("data_dir", None, "Data root (default: "
                      "$BIOALBERT_DATA_DIR, then ../shared/data).")
  flags.DEFINE_list("datasets", ["NCBI-disease"],
                    "Datasets to fine-tune and evaluate on; NAME:N runs that "
                    "one with N seeds instead of --seeds.")
  flags.DEFINE_integer("seeds", 3, "Fine-tuning seeds per arm and dataset.",
                       lower_bound=1)
  flags.DEFINE_integer("first_seed", 1, "The first seed.")
  flags.DEFINE_list(
      "exclude_from_corpus", None,
      "Datasets whose devel/test text is kept out of the corpus (default: "
      "--datasets). Fine-tuning in the same directory may later evaluate "
      "any of them.")
  flags.DEFINE_list("sources", list(corpus_lib.SOURCES),
                    "Corpus sources (bio.experiments.corpus).")
  for field in dataclasses.fields(Recipe):
    value = getattr(defaults, field.name)
    define = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
              str: flags.DEFINE_string}[type(value)]
    define(field.name, value, "Recipe: %s." % field.name.replace("_", " "))


def parse_datasets(values, flag="--datasets"):
  """["A", "B:1"] -> (("A", "B"), (("B", 1),)); raises ExperimentError."""
  names, counts = [], []
  for value in values:
    name, _, n = value.partition(":")
    if not name or (n and (not n.isdigit() or int(n) < 1)):
      raise ExperimentError("%s: %r is not NAME or NAME:SEEDS "
                            "(SEEDS >= 1)" % (flag, value))
    try:
      name = datasets.get_dataset(name)["name"]
    except ValueError as e:
      raise ExperimentError("%s: %s" % (flag, e))
    names.append(name)
    if n:
      counts.append((name, int(n)))
  return tuple(names), tuple(counts)


def options_from_flags(fv=flags.FLAGS):
  recipe = Recipe(**{f.name: fv[f.name].value
                     for f in dataclasses.fields(Recipe)})
  names, counts = parse_datasets(fv.datasets)
  return ExperimentOptions(
      output_dir=fv.output_dir, datasets=names, dataset_seeds=counts,
      seeds=fv.seeds, first_seed=fv.first_seed, data_dir=fv.data_dir,
      recipe=recipe, sources=tuple(fv.sources),
      exclude=parse_datasets(fv.exclude_from_corpus or [],
                             "--exclude_from_corpus")[0])


def main(argv):
  del argv
  try:
    opts = options_from_flags()
    paths.resolve_data_dir(opts.data_dir)
    run(opts)
  except (ExperimentError, corpus_lib.CorpusError, FileNotFoundError,
          file_utils.DirLockedError) as e:
    sys.exit("pretraining_gain: %s" % e)


if __name__ == "__main__":
  define_flags()
  app.run(main)
