"""Console scripts (`bioalbert-*`, see setup.py): each runs one tool's module
exactly as `python -m MODULE` would, so the scripts and the module paths
can never disagree.

  bioalbert-tag --saved_model=export/ncbi --input=abstracts.txt --output=tags.jsonl
"""
import runpy
import sys

# console script -> module run as __main__
COMMANDS = {
    "bioalbert-prepare-corpus": "bio.corpus.prepare",
    "bioalbert-train-spm": "albert.train_spm",
    "bioalbert-create-pretraining-data": "create_pretraining_data",
    "bioalbert-run-pretraining": "run_pretraining",
    "bioalbert-run-ner": "run_ner",
    "bioalbert-run-all-ner": "bio.ner.run_all",
    "bioalbert-ensemble-ner": "bio.ner.ensemble",
    "bioalbert-datasets": "bio.ner.datasets",
    "bioalbert-chemdner": "bio.ner.chemdner",
    "bioalbert-export-ner": "bio.serving.export",
    "bioalbert-export-encoder": "albert.export_to_tfhub",
    "bioalbert-export-hf": "bio.serving.export_hf",
    "bioalbert-import-hf": "albert.import_hf",
    "bioalbert-tag": "bio.serving.tag",
    "bioalbert-beam-prepare-corpus": "bio.beam.prepare_corpus",
    "bioalbert-beam-create-pretraining-data":
        "bio.beam.create_pretraining_data",
    "bioalbert-beam-tag": "bio.beam.tag",
    "bioalbert-experiment-corpus": "bio.experiments.corpus",
    "bioalbert-pretraining-gain": "bio.experiments.pretraining_gain",
    "bioalbert-attention": "bio.experiments.attention",
    "bioalbert-demo": "bio.demo",
}


def run_module(module):
  """Runs `module` as the main program with this process's arguments."""
  runpy.run_module(module, run_name="__main__", alter_sys=True)


def _entry(module):
  return lambda: run_module(module)


def entry_points():
  """The `console_scripts` lines for setup.py."""
  return ["%s = bio.console:%s" % (name, name.replace("-", "_"))
          for name in COMMANDS]


for _name, _module in COMMANDS.items():
  setattr(sys.modules[__name__], _name.replace("-", "_"), _entry(_module))
