r"""Fine-tunes ALBERT for biomedical NER, selects on dev, tests, predicts.

  python run_ner.py --dataset=NCBI-disease --albert_config_file=CONFIG.json \
    --spm_model_file=SPM.model --init_checkpoint=MODEL.ckpt \
    --output_dir=OUT --do_train --do_eval --do_predict

The work is done by bio.ner_runner; see its docstring for the outputs.
"""
import sys

from absl import app
from absl import flags
from absl import logging

from albert import estimator_utils
from bio import ner_data
from bio import ner_runner

FLAGS = flags.FLAGS
ner_runner.define_flags()
# Show the flags defined in bio.ner_runner (and the TPU ones) under --help.
flags.adopt_module_key_flags(ner_runner)
flags.adopt_module_key_flags(estimator_utils)


def main(_):
  logging.set_verbosity(logging.INFO)
  try:
    ner_runner.run(ner_runner.options_from_flags(FLAGS))
  except (ner_data.NerFormatError, ner_runner.NerRunError,
          FileNotFoundError) as e:
    logging.error("%s", e)
    sys.stderr.write("run_ner.py: error: %s\n" % e)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
