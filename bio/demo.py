r"""`make demo`: the whole BioALBERT pipeline on a small scale, end to end,
and what biomedical pretraining buys: NCBI-disease with and without it.

  python -m bio.demo --output_dir=demo_output [--data_dir=DIR] [--seeds=3]

1. A pretraining corpus from the shared data (CHEMDNER abstracts, the
   training splits of the BioNER datasets, the PubMed sample), with every
   NCBI-disease devel/test sentence kept out (`bio.experiments.corpus`).
2. A SentencePiece vocabulary trained on it.
3. Pretraining TFRecords (create_pretraining_data.py).
4. A small ALBERT (2 layers) pretrained from scratch on 64-piece sequences
   (run_pretraining.py, LAMB).
5. NER fine-tuning on NCBI-disease twice with the same budget, from scratch
   and from the pretrained checkpoint (run_ner.py), each with dev-set model
   selection and test-set P/R/F1; the gain is printed.
6. SavedModel export of the pretrained arm, then tagging two example
   abstracts with it.

Stages 1-5 are `bio.experiments.pretraining_gain` with a shorter recipe
(one seed; `DEMO_RECIPE`). Every stage runs the real command-line tool in a
subprocess (what a user would type is printed), logs to output_dir/logs/,
and is skipped on a re-run when its output is complete. The model is small
and pretrained for six minutes: the pretrained arm comes out ahead by
15-20 F1 points, at F1 near 35 (README, "What `make demo` does"); the
experiment's defaults (4 layers, 8k pretraining and 1.5k fine-tuning
steps, about two hours) reach 47. The F1 shows the pipeline, not what
BioALBERT reaches.
"""
import dataclasses
import json
import os
import sys
import time

from absl import app
from absl import flags

from albert import file_utils
from bio.experiments import corpus as corpus_lib
from bio.experiments import pretraining_gain as gain

DATASET = "NCBI-disease"
# Chosen by measurement to show the gain within about 15 minutes on 2 CPU
# cores (README, section 9, "The demo's recipe"): two layers and 64-piece
# sequences make a pretraining step about 4.5x cheaper than the
# experiment's, at lr 1e-2 2,400 steps help fine-tuning more than at 5e-3
# or 2e-2, and the gain grows from 600 to 1,000 fine-tuning steps.
DEMO_RECIPE = gain.Recipe(
    num_hidden_layers=2, max_seq_length=64, max_predictions_per_seq=10,
    dupe_factor=1, pretrain_steps=2400, pretrain_learning_rate=1e-2,
    ner_steps=1000, ner_eval_every=200)

flags.DEFINE_string("output_dir", "demo_output", "Where every artifact goes.")
flags.DEFINE_string("data_dir", None, "Shared data (default: "
                    "$BIOALBERT_DATA_DIR, then ../shared/data).")
flags.DEFINE_integer("pretrain_steps", DEMO_RECIPE.pretrain_steps,
                     "Pretraining steps.")
flags.DEFINE_integer("ner_steps", DEMO_RECIPE.ner_steps,
                     "Fine-tuning steps of each arm.")
flags.DEFINE_integer("seeds", 1, "Fine-tuning seeds per arm; the gain "
                     "printed is the mean, seed 1 is exported. A re-run "
                     "with more seeds reuses the pretrained model.",
                     lower_bound=1)
FLAGS = flags.FLAGS

EXAMPLES = [
    "Germline mutations in BRCA1 and BRCA2 confer a high risk of breast and "
    "ovarian cancer, and carriers of these mutations are offered risk-"
    "reducing surgery.",
    "Duchenne muscular dystrophy is caused by mutations in the dystrophin "
    "gene; patients with cystic fibrosis or Huntington disease were used as "
    "controls.",
]


def demo_options(output_dir, data_dir=None, pretrain_steps=None,
                 ner_steps=None, seeds=1):
  recipe = dataclasses.replace(
      DEMO_RECIPE,
      pretrain_steps=pretrain_steps or DEMO_RECIPE.pretrain_steps,
      ner_steps=ner_steps or DEMO_RECIPE.ner_steps)
  return gain.ExperimentOptions(
      output_dir=output_dir, datasets=(DATASET,), seeds=seeds,
      data_dir=data_dir, recipe=recipe)


def main(_):
  opts = demo_options(os.path.abspath(FLAGS.output_dir), FLAGS.data_dir,
                      FLAGS.pretrain_steps, FLAGS.ner_steps, FLAGS.seeds)
  try:
    gain.run(opts, then=_export_and_tag, job="demo")
  except (gain.ExperimentError, corpus_lib.CorpusError, FileNotFoundError,
          file_utils.DirLockedError) as e:
    sys.exit("demo: %s" % e)


def _export_and_tag(stages, layout, summary):
  """Exports the pretrained arm's run and tags the examples with it."""
  run_dir = layout.ner(DATASET, "pretrained", 1)
  export_dir = layout.join("export", "ner_ncbi_disease")
  examples = layout.join("examples.txt")
  tagged = layout.join("examples.jsonl")
  stages.run("Export the pretrained arm as a SavedModel", [
      sys.executable, "-m", "bio.serving.export", "--model_dir=" + run_dir,
      "--export_dir=" + export_dir],
             os.path.join(export_dir, "saved_model.pb"), name="export")
  file_utils.atomic_write(examples, "\n".join(EXAMPLES) + "\n")
  stages.run("Tag two example abstracts", [
      sys.executable, "-m", "bio.serving.tag", "--saved_model=" + export_dir,
      "--input=" + examples, "--output=" + tagged, "--format=jsonl"], None,
             name="tag")
  with open(tagged, encoding="utf-8") as f:
    for line in f:
      _print_tagged(stages, json.loads(line))
  arms = summary[DATASET]
  seeds = len(arms["scratch"]["runs"])
  stages.say("\nNCBI-disease test F1%s: %.1f from scratch, %.1f after "
             "pretraining (%+.1f); dev F1 %.1f vs %.1f." % (
                 " (mean of %d seeds)" % seeds if seeds > 1 else "",
                 100 * arms["scratch"]["test"][0],
                 100 * arms["pretrained"]["test"][0],
                 100 * arms["gain"]["test"], 100 * arms["scratch"]["dev"][0],
                 100 * arms["pretrained"]["dev"][0]))
  stages.say("Demo finished in %s. Artifacts in %s: "
             "results.md, dev_f1.png, corpus/, vocab/, records/, pretrain/, "
             "ner/, export/, examples.jsonl, logs/." % (
                 _minutes(time.time() - stages.started), layout.out))


def _minutes(seconds):
  return "%.1f min" % (seconds / 60.0)


def _print_tagged(stages, doc):
  stages.say("\n    %s" % doc["text"])
  for e in doc["entities"] or [{"text": "(no entity found)", "type": "",
                                "start": "", "end": "", "score": ""}]:
    stages.say("      %-40s %-8s [%s, %s) %s" % (
        e["text"], e["type"], e["start"], e["end"], e["score"]))


if __name__ == "__main__":
  app.run(main)
