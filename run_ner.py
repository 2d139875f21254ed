r"""Fine-tunes ALBERT for biomedical NER, selects on dev, tests, predicts.

  python run_ner.py --dataset=NCBI-disease --albert_config_file=CONFIG.json \
    --spm_model_file=SPM.model --init_checkpoint=MODEL.ckpt \
    --output_dir=OUT --do_train --do_eval --do_predict

Then, as BioBERT's final runs, train on train and dev together for the
number of steps dev chose, and test the last checkpoint:

  python run_ner.py ... --output_dir=OUT2 --train_split=train_dev \
    --train_step=N --do_train --do_predict

Flag defaults are the paper's Table III. The work is done by
bio.ner.runner (see its docstring for the outputs); a user error (bad
flags or input files, a busy or mismatched --output_dir) is one line on
stderr and exit status 1.
"""
import sys

from absl import app
from absl import flags
from absl import logging

from albert import common_flags
from bio.ner import runner

FLAGS = flags.FLAGS
runner.define_flags()
# Show the flags defined in bio.ner.runner (and the shared ones) under --help.
flags.adopt_module_key_flags(runner)
flags.adopt_module_key_flags(common_flags)


def main(_):
  logging.set_verbosity(logging.INFO)
  try:
    runner.run(runner.options_from_flags(FLAGS))
  except runner.USER_ERRORS as e:
    logging.error("%s", e)
    sys.stderr.write("run_ner.py: error: %s\n" % e)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
