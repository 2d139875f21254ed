# coding=utf-8
r"""Exports a checkpoint of this project as a Hugging Face `transformers`
ALBERT directory.

  python -m albert.export_hf --init_checkpoint=pretrain_out \
      --albert_config_file=albert_config.json --spm_model_file=bio30k.model \
      --output_dir=hf/bioalbert

Output (loadable with `AutoModel*.from_pretrained(output_dir)` and
`AutoTokenizer.from_pretrained(output_dir)`):

  config.json              HF AlbertConfig; hidden_act "gelu" -> "gelu_new"
  model.safetensors        float32 weights (albert/hf_convert.py's table)
  spiece.model             the SentencePiece model, unchanged
  tokenizer.json           the same tokenizer for `tokenizers` (fast)
  tokenizer_config.json    AlbertTokenizer with this project's settings
  special_tokens_map.json  [CLS] [SEP] [MASK] <pad> <unk>
  README.md                model card (config, vocabulary, training data and
                           metrics when the caller knows them)

The architecture follows the checkpoint (--head=auto): `cls/predictions`
and `cls/seq_relationship` -> AlbertForPreTraining, `cls/predictions` only
-> AlbertForMaskedLM, neither -> AlbertModel. --head=encoder exports only
the encoder of any checkpoint. A fine-tuned run_ner.py directory ->
AlbertForTokenClassification is `bio.serving.export_hf` (console script
bioalbert-export-hf), which calls `export` here with the label list and
the classifier's variable names: albert never imports bio.

Optimizer slots (adam_m/adam_v) and global_step are skipped; any other
variable the chosen architecture does not hold is an error (nothing is
dropped silently). Writing needs NumPy and safetensors only (no torch).
A non-empty --output_dir is refused unless --overwrite, which replaces only
the files listed above.
"""
import dataclasses
import hashlib
import json
import os
import sys
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import sentencepiece as spm
import tensorflow.compat.v1 as tf

from albert import common_flags
from albert import file_utils
from albert import hf_convert
from albert import hf_tokenizer
from albert.hf_convert import HfConvertError

WEIGHTS_FILE = "model.safetensors"
SPM_FILE = "spiece.model"
SPECIAL_PIECES = {"cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}
OUTPUT_FILES = ("config.json", WEIGHTS_FILE, SPM_FILE, "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "README.md")
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class ClassifierHead:
  """A token classifier stored in the checkpoint: its TF variable names
  (weights [labels, hidden], bias [labels]) and labels in id order."""
  weights_name: str
  bias_name: str
  labels: tuple


@dataclasses.dataclass(frozen=True)
class ExportOptions:
  checkpoint: str
  albert_config_file: str
  spm_model_file: str
  output_dir: str
  do_lower_case: bool = True
  corrected_digit_comma: bool = False
  head: str = AUTO
  overwrite: bool = False
  classifier: Optional[ClassifierHead] = None
  # Model-card sections beyond the defaults: [(title, markdown)].
  card_sections: tuple = ()
  title: str = "BioALBERT"


def read_checkpoint(prefix):
  """({variable: array} without training state, global step or None)."""
  reader = tf.train.load_checkpoint(prefix)
  arrays, step = {}, None
  for name in reader.get_variable_to_shape_map():
    if name == "global_step":
      step = int(reader.get_tensor(name))
    if hf_convert.is_training_state(name):
      continue
    arrays[name] = reader.get_tensor(name)
  return arrays, step


def choose_head(names, options):
  """The head to export for checkpoint variables `names`."""
  if options.classifier is not None:
    if options.head not in (AUTO, hf_convert.TOKEN_CLASSIFICATION):
      raise HfConvertError("a classifier was given, so the head is %s, not %s"
                           % (hf_convert.TOKEN_CLASSIFICATION, options.head))
    return hf_convert.TOKEN_CLASSIFICATION
  if options.head != AUTO:
    return options.head
  has_mlm = any(n.startswith("cls/predictions/") for n in names)
  has_sop = any(n.startswith("cls/seq_relationship/") for n in names)
  if has_mlm and has_sop:
    return hf_convert.PRETRAINING
  return hf_convert.MASKED_LM if has_mlm else hf_convert.ENCODER


def _parts(head, options):
  classifier = None
  if options.classifier is not None:
    classifier = (options.classifier.weights_name,
                  options.classifier.bias_name)
  return hf_convert.head_parts(head, classifier)


def check_unexpected(names, config, options):
  """Raises for variables no ALBERT part explains (a typo'd scope, another
  model's checkpoint); heads the chosen architecture lacks are fine."""
  classifier = None
  if options.classifier is not None:
    classifier = (options.classifier.weights_name, options.classifier.bias_name)
  everything = hf_convert.Parts(pooler=True, masked_lm=True,
                                sentence_order=True, classifier=classifier)
  known = {p.tf_name for p in hf_convert.param_table(config, everything)}
  unexpected = sorted(set(names) - known)
  if unexpected:
    raise HfConvertError(
        "the checkpoint holds %d variable(s) that are not ALBERT weights: %s"
        % (len(unexpected), ", ".join(unexpected[:20])))


def spm_special_ids(sp_model, spm_model_file):
  """{"pad_token": piece, ...} and HF config ids; refuses a model without
  ALBERT's control symbols."""
  tokens = {}
  for key, piece in SPECIAL_PIECES.items():
    if sp_model.piece_to_id(piece) == sp_model.unk_id():
      raise HfConvertError("%s has no %s piece: not an ALBERT SentencePiece "
                           "model" % (spm_model_file, piece))
    tokens[key] = piece
  if sp_model.pad_id() < 0:
    raise HfConvertError("%s has no padding piece (pad_id=-1)"
                         % spm_model_file)
  tokens["pad_token"] = sp_model.id_to_piece(sp_model.pad_id())
  tokens["unk_token"] = sp_model.id_to_piece(sp_model.unk_id())
  tokens["bos_token"], tokens["eos_token"] = "[CLS]", "[SEP]"
  ids = {"pad_token_id": sp_model.pad_id(),
         "bos_token_id": sp_model.piece_to_id("[CLS]"),
         "eos_token_id": sp_model.piece_to_id("[SEP]")}
  return tokens, ids


def tokenizer_config(tokens, options, max_length):
  """tokenizer_config.json: HF's AlbertTokenizer, preprocessing as
  tokenization.preprocess_text (whitespace collapsed, accents stripped)."""
  config = {"tokenizer_class": "AlbertTokenizer",
            "do_lower_case": options.do_lower_case, "remove_space": True,
            "keep_accents": False, "model_max_length": max_length}
  config.update(tokens)
  return config


def _config_table(config):
  rows = ["| field | value |", "| --- | --- |"]
  for key in ("vocab_size", "embedding_size", "hidden_size",
              "num_hidden_layers", "num_hidden_groups", "inner_group_num",
              "num_attention_heads", "intermediate_size", "hidden_act",
              "max_position_embeddings"):
    rows.append("| %s | %s |" % (key, config.get(key)))
  return "\n".join(rows)


def model_card(options, config, head, step, spm_info):
  """README.md of the exported directory (markdown with HF front matter)."""
  arch = hf_convert.ARCHITECTURES[head]
  pipeline = ("token-classification"
              if head == hf_convert.TOKEN_CLASSIFICATION else "fill-mask")
  rule = ("the corrected one of Hugging Face's AlbertTokenizer, as here"
          if options.corrected_digit_comma else
          "upstream ALBERT's under Python 3 (\"e1,\" -> \"▁e\" \"▁1\" \",\"); "
          "Hugging Face's AlbertTokenizer gives \"▁e\" \"1\" \",\" for such "
          "pieces, and its fast tokenizer does not split digit-commas at all")
  lines = [
      "---", "library_name: transformers", "pipeline_tag: %s" % pipeline,
      "tags: [albert, biomedical, bioalbert]", "---", "",
      "# %s (%s)" % (options.title, arch), "",
      "Converted by `albert.export_hf` from the TensorFlow checkpoint "
      "`%s`%s." % (os.path.basename(options.checkpoint),
                   "" if step is None else " (global step %d)" % step), "",
      "## Config", "", _config_table(config), "",
      "## Vocabulary", "",
      "SentencePiece model `%s` (%d pieces, SHA-256 `%s`), do_lower_case=%s, "
      "accents stripped (NFKD). Digit-comma rule of the training data: %s."
      % (SPM_FILE, spm_info["pieces"], spm_info["sha256"],
         options.do_lower_case, rule), "",
  ]
  for title, text in options.card_sections:
    lines += ["## %s" % title, "", text.rstrip(), ""]
  lines += ["## Usage", "", "```python",
            "from transformers import AutoTokenizer, %s" % arch,
            "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")",
            "model = %s.from_pretrained(\"PATH\")" % arch, "```", ""]
  return "\n".join(lines)


def _sha256(data):
  return hashlib.sha256(data).hexdigest()


def build_files(options):
  """{file name: bytes or str} of the export, and the head chosen."""
  from safetensors.numpy import save  # pylint: disable=import-outside-toplevel
  with tf.io.gfile.GFile(options.albert_config_file) as f:
    config = json.load(f)
  arrays, step = read_checkpoint(options.checkpoint)
  head = choose_head(arrays, options)
  check_unexpected(arrays, config, options)
  parts = _parts(head, options)
  tensors = hf_convert.to_hf_tensors(arrays, config, parts)
  with tf.io.gfile.GFile(options.spm_model_file, "rb") as f:
    spm_bytes = f.read()
  sp_model = spm.SentencePieceProcessor()
  try:
    sp_model.LoadFromSerializedProto(spm_bytes)
  except (RuntimeError, OSError) as e:
    raise HfConvertError("%s: not a SentencePiece model (%s)"
                         % (options.spm_model_file, e)) from e
  if sp_model.get_piece_size() != config["vocab_size"]:
    raise HfConvertError("%s has %d pieces but vocab_size is %d"
                         % (options.spm_model_file, sp_model.get_piece_size(),
                            config["vocab_size"]))
  tokens, ids = spm_special_ids(sp_model, options.spm_model_file)
  labels = list(options.classifier.labels) if options.classifier else None
  hf_config = hf_convert.to_hf_config(config, head, labels, ids)
  spm_info = {"pieces": sp_model.get_piece_size(),
              "sha256": _sha256(spm_bytes)}
  files = {
      "config.json": json.dumps(hf_config, indent=2, sort_keys=True) + "\n",
      WEIGHTS_FILE: save(tensors, metadata={"format": "pt"}),
      SPM_FILE: spm_bytes,
      "tokenizer.json": hf_tokenizer.tokenizer_json(
          sp_model, spm_bytes, options.do_lower_case),
      "tokenizer_config.json": json.dumps(tokenizer_config(
          tokens, options, config["max_position_embeddings"]), indent=2) + "\n",
      "special_tokens_map.json": json.dumps(tokens, indent=2) + "\n",
      "README.md": model_card(options, config, head, step, spm_info),
  }
  return files, head


def check_output_dir(output_dir, overwrite):
  """Refuses an existing non-empty directory unless `overwrite`."""
  if tf.io.gfile.exists(output_dir) and not tf.io.gfile.isdir(output_dir):
    raise HfConvertError("--output_dir %s is a file" % output_dir)
  if (tf.io.gfile.isdir(output_dir) and tf.io.gfile.listdir(output_dir) and
      not overwrite):
    raise HfConvertError("--output_dir %s is not empty (pass --overwrite to "
                         "replace the exported files in it)" % output_dir)


def write_files(files, output_dir):
  """Writes `files` as a whole: a new directory appears complete; into an
  existing one each file is replaced atomically (others are left alone)."""
  if tf.io.gfile.isdir(output_dir) and not tf.io.gfile.listdir(output_dir):
    tf.io.gfile.rmtree(output_dir)  # empty: replaced by the complete one
  if not tf.io.gfile.exists(output_dir):
    with file_utils.atomic_dir(output_dir) as tmp:
      for name, data in files.items():
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(os.path.join(tmp, name), mode) as f:
          f.write(data)
    return
  for name, data in files.items():
    file_utils.atomic_write(os.path.join(output_dir, name), data)


def export(options):
  """Writes the HF directory of `options`; returns the head exported."""
  check_output_dir(options.output_dir, options.overwrite)
  files, head = build_files(options)
  write_files(files, options.output_dir)
  logging.info("Exported %s (%s) to %s", options.checkpoint,
               hf_convert.ARCHITECTURES[head], options.output_dir)
  return head


def define_flags():
  common_flags.define_model_flags(init_checkpoint_help=(
      "The checkpoint to export: a prefix (model.ckpt-N) or a directory whose "
      "latest checkpoint is taken."))
  common_flags.define_tokenizer_flags()
  common_flags.define_output_dir_flag("The Hugging Face directory to write.")
  flags.DEFINE_enum("head", AUTO, [AUTO, hf_convert.PRETRAINING,
                                   hf_convert.MASKED_LM, hf_convert.ENCODER],
                    "The architecture: auto follows the checkpoint's cls/ "
                    "heads; encoder exports AlbertModel from any checkpoint.")
  flags.DEFINE_bool("overwrite", False,
                    "Replace the exported files in a non-empty --output_dir.")


def options_from_flags(flag_values):
  """ExportOptions from parsed flags (HfConvertError for missing ones)."""
  for name in ("init_checkpoint", "albert_config_file", "spm_model_file",
               "output_dir"):
    if not flag_values[name].value:
      raise HfConvertError("--%s is required" % name)
  checkpoint = file_utils.resolve_checkpoint(
      flag_values.init_checkpoint, error_cls=HfConvertError)
  return ExportOptions(
      checkpoint=checkpoint,
      albert_config_file=flag_values.albert_config_file,
      spm_model_file=flag_values.spm_model_file,
      output_dir=flag_values.output_dir,
      do_lower_case=flag_values.do_lower_case,
      corrected_digit_comma=flag_values.corrected_digit_comma,
      head=flag_values.head, overwrite=flag_values.overwrite)


def run_cli(program, body):
  """Runs `body()`; a conversion error is one line on stderr, exit 1."""
  try:
    body()
  except ImportError as e:
    sys.stderr.write("%s: error: %s (install the extra: pip install "
                     "'bioalbert[hf]')\n" % (program, e))
    sys.exit(1)
  except (HfConvertError, ValueError, OSError, tf.errors.OpError) as e:
    message = getattr(e, "message", None) or str(e)
    sys.stderr.write("%s: error: %s\n" % (program, message.splitlines()[0]
                                          if message else repr(e)))
    sys.exit(1)


def main(argv):
  del argv
  run_cli("export_hf", lambda: export(options_from_flags(flags.FLAGS)))


if __name__ == "__main__":
  define_flags()
  app.run(main)
