r"""Exports a fine-tuned run_ner.py directory, or any checkpoint, as a Hugging
Face `transformers` ALBERT directory (console script bioalbert-export-hf).

  python -m bio.serving.export_hf --model_dir=RUN_NER_OUTPUT_DIR --output_dir=hf/ncbi
  python -m bio.serving.export_hf --init_checkpoint=pretrain_out \
      --albert_config_file=albert_config.json --spm_model_file=bio30k.model \
      --output_dir=hf/bioalbert

With --model_dir: the checkpoint run_ner.py selected (best_checkpoint.txt,
else the latest), the tokenizer and config recorded in run_config.json
(--albert_config_file/--spm_model_file override them), and the labels of
label_map.json -> AlbertForTokenClassification with id2label/label2id; the
model card (README.md) lists the training data and the dev/test metrics of
the directory. Without it: albert.export_hf (pretraining heads ->
AlbertForPreTraining, encoder -> AlbertModel). Files written: see
albert/export_hf.py.
"""
import json
import os

from absl import app
from absl import flags
import tensorflow.compat.v1 as tf

from albert import export_hf
from albert import file_utils
from albert.hf_convert import HfConvertError
from bio.ner import crf as ner_crf
from bio.ner import model as ner_model
from bio.ner import run_dir

TEST_RESULTS_FILE = "test_results.json"
_METRICS = ("conlleval_precision", "conlleval_recall", "conlleval_f1",
            "strict_f1", "token_accuracy")


def classifier_head(labels):
  """The NER head's variables (bio.ner.model.token_classifier)."""
  scope = ner_model.CLASSIFIER_SCOPE
  return export_hf.ClassifierHead(scope + "/output_weights",
                                  scope + "/output_bias", tuple(labels))


def selected_checkpoint(model_dir):
  """best_checkpoint.txt's checkpoint, else the latest training one."""
  best = run_dir.read_best_checkpoint(model_dir)
  if best:
    return file_utils.resolve_checkpoint(best, "best_checkpoint.txt",
                                         HfConvertError)
  found = run_dir.list_checkpoints(model_dir)
  if not found:
    raise HfConvertError("--model_dir %s holds no checkpoint (no "
                         "best_checkpoint.txt, no model.ckpt-N)" % model_dir)
  return found[-1][1]


def _read_json(path):
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _metrics_rows(name, record):
  cells = ["%.4f" % record[k] if isinstance(record.get(k), (int, float))
           else "-" for k in _METRICS]
  return "| %s | %s |" % (name, " | ".join(cells))


def card_sections(model_dir, config, labels):
  """[(title, markdown)]: training data, labels and metrics of the run."""
  data = ["- dataset: %s" % config.get("dataset", "(not recorded)"),
          "- data directory: `%s`" % config.get("data_dir", "?"),
          "- initialised from: `%s`" % config.get("init_checkpoint", "?"),
          "- max_seq_length: %s (windows of half a window stride)"
          % config.get("max_seq_length", "?"),
          "- labels (%d): %s" % (len(labels), ", ".join(labels))]
  sections = [("Training data", "\n".join(data))]
  rows, decoders = [], []
  dev = run_dir.read_dev_results(model_dir) or {}
  if dev.get("chosen"):
    rows.append(_metrics_rows("dev (step %s)" % dev["chosen"].get("step"),
                              dev["chosen"]))
    decoders.append("%s (dev)" % run_dir.results_decode(dev))
  test = _read_json(os.path.join(model_dir, TEST_RESULTS_FILE))
  if test:
    rows.append(_metrics_rows("test", test))
    decoders.append("%s (test)" % run_dir.results_decode(test))
  if rows:
    header = ["| split | " + " | ".join(_METRICS) + " |",
              "| --- |" + " --- |" * len(_METRICS)]
    sections.append(("Metrics", (
        "Entity-level (seqeval), from the run directory; word labels "
        "decoded by %s (bio.ner.decoding; Hugging Face's token-"
        "classification pipeline decodes by argmax).\n\n" %
        " and ".join(decoders)) + "\n".join(header + rows)))
  return tuple(sections)


def run_dir_options(model_dir, output_dir, overwrite=False,
                    albert_config_file=None, spm_model_file=None):
  """ExportOptions of a run_ner.py directory."""
  if not tf.io.gfile.isdir(model_dir):
    raise HfConvertError("--model_dir %s does not exist" % model_dir)
  if run_dir.holds_ensemble(model_dir):
    raise HfConvertError(
        "--model_dir %s holds an ensemble (bio.ner.ensemble), and a Hugging "
        "Face model is one network: convert one of its members, or export "
        "the ensemble with bio.serving.export" % model_dir)
  labels = run_dir.read_label_list(model_dir)
  if not labels:
    raise HfConvertError("--model_dir %s has no %s: not a run_ner.py output "
                         "directory" % (model_dir, run_dir.LABEL_MAP_FILE))
  config = run_dir.read_run_config(model_dir)
  settings = config.get(getattr(run_dir, "SETTINGS_KEY", ""), None) or {}
  albert_config_file = albert_config_file or config.get("albert_config_file")
  spm_model_file = spm_model_file or config.get("spm_model_file")
  if not albert_config_file or not spm_model_file:
    raise HfConvertError("%s records no albert_config_file/spm_model_file: "
                         "pass --albert_config_file and --spm_model_file"
                         % os.path.join(model_dir, run_dir.RUN_CONFIG_FILE))
  checkpoint = selected_checkpoint(model_dir)
  if ner_crf.load_params(checkpoint, ner_model.CLASSIFIER_SCOPE) is not None:
    raise HfConvertError(
        "%s has a CRF head (run_ner.py --decode=crf) and Hugging Face's "
        "AlbertForTokenClassification has none, so its learned transition "
        "scores would be lost: export it as a SavedModel with "
        "python -m bio.serving.export" % checkpoint)
  return export_hf.ExportOptions(
      checkpoint=checkpoint,
      albert_config_file=albert_config_file, spm_model_file=spm_model_file,
      output_dir=output_dir, do_lower_case=config.get("do_lower_case", True),
      corrected_digit_comma=bool(config.get(
          "corrected_digit_comma", settings.get("corrected_digit_comma"))),
      overwrite=overwrite, classifier=classifier_head(labels),
      card_sections=card_sections(model_dir, config, labels),
      title="BioALBERT NER (%s)" % config.get("dataset", "fine-tuned"))


def main(argv):
  del argv
  fv = flags.FLAGS

  def body():
    if fv.model_dir:
      if not fv.output_dir:
        raise HfConvertError("--output_dir is required")
      options = run_dir_options(fv.model_dir, fv.output_dir, fv.overwrite,
                                fv.albert_config_file, fv.spm_model_file)
    else:
      options = export_hf.options_from_flags(fv)
    export_hf.export(options)

  export_hf.run_cli("export_hf", body)


if __name__ == "__main__":
  export_hf.define_flags()
  flags.DEFINE_string("model_dir", None,
                      "A run_ner.py output directory to export as "
                      "AlbertForTokenClassification (instead of "
                      "--init_checkpoint).")
  app.run(main)
