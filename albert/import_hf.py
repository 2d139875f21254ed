# coding=utf-8
r"""Imports a Hugging Face `transformers` ALBERT directory as a TF checkpoint
of this project.

  python -m albert.import_hf --hf_dir=hf/albert-base-v2 --output_dir=ckpt/

Input: config.json (model_type albert), the weights as model.safetensors
(or sharded, model.safetensors.index.json) or else pytorch_model.bin, read
with torch.load(weights_only=True) so no pickle code runs, and the
SentencePiece model spiece.model.

Output (ready for run_pretraining.py / run_ner.py --init_checkpoint=DIR):

  model.ckpt-0.{index,data-00000-of-00001}, checkpoint
      upstream variable names (albert/hf_convert.py's table): bert/ encoder,
      bert/pooler when the model has one, cls/predictions (MLM head) and
      cls/seq_relationship (SOP head) when it has them
  albert_config.json   hidden_act gelu_new -> gelu (the same tanh formula)
  spiece.model         copied, with spm_record.json (albert/vocab_record.py)
                       so tools check the vocabulary they are given

Other heads (e.g. a token classifier) are not imported and are logged. A
config the TF graph cannot run identically (HF's erf "gelu", relative
position embeddings, another LayerNorm epsilon, a non-identity projection
when embedding_size == hidden_size) is refused with one error line. The
output directory must not exist or be empty (--overwrite replaces the
files above in it).
"""
import json
import os
import re
import shutil

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from albert import export_hf
from albert import file_utils
from albert import hf_convert
from albert import vocab_record
from albert.hf_convert import HfConvertError

CHECKPOINT_NAME = "model.ckpt-0"
CONFIG_FILE = "albert_config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"


def _read_safetensors(paths):
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  tensors = {}
  for path in paths:
    tensors.update(load_file(path))
  return tensors


def _read_torch(path):
  import torch  # pylint: disable=import-outside-toplevel
  state = torch.load(path, map_location="cpu", weights_only=True)
  return {k: v.detach().cpu().float().numpy() if v.is_floating_point()
          else v.cpu().numpy() for k, v in state.items()}


def read_weights(hf_dir):
  """{key: np.ndarray} of the directory's weights (see the docstring)."""
  single = os.path.join(hf_dir, export_hf.WEIGHTS_FILE)
  index = os.path.join(hf_dir, SAFETENSORS_INDEX)
  if os.path.exists(single):
    return _read_safetensors([single])
  if os.path.exists(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    return _read_safetensors([os.path.join(hf_dir, s) for s in shards])
  if os.path.exists(os.path.join(hf_dir, TORCH_WEIGHTS)):
    return _read_torch(os.path.join(hf_dir, TORCH_WEIGHTS))
  raise HfConvertError("%s holds no %s, %s or %s" % (
      hf_dir, export_hf.WEIGHTS_FILE, SAFETENSORS_INDEX, TORCH_WEIGHTS))


def detect_parts(tensors):
  """The `hf_convert.Parts` the state dict holds."""
  prefix = "albert." if any(k.startswith("albert.") for k in tensors) else ""
  return hf_convert.Parts(
      prefix=prefix,
      pooler=prefix + "pooler.weight" in tensors,
      masked_lm="predictions.bias" in tensors,
      sentence_order="sop_classifier.classifier.weight" in tensors)


def convert(tensors, config):
  """TF {variable: float32 array} of an HF state dict; logs what is left."""
  parts = detect_parts(tensors)
  arrays = hf_convert.to_tf_arrays(tensors, config, parts)
  used = {p.hf_name for p in hf_convert.param_table(config, parts)}
  # Tied copies of the embeddings / MLM bias, and buffers, carry no weight.
  ignorable = re.compile(r"(predictions\.decoder\.(weight|bias)|"
                         r"position_ids|token_type_ids)$")
  left = sorted(k for k in tensors if k not in used and
                not ignorable.search(k))
  if left:
    logging.warning("Not imported (no counterpart in this project's "
                    "pretraining graph): %s", ", ".join(left))
  for name, value in arrays.items():
    if value.dtype != np.float32:
      arrays[name] = value.astype(np.float32)
  return arrays


def write_checkpoint(arrays, prefix):
  """Saves {name: array} as a TF checkpoint at `prefix` (weights only)."""
  with tf.Graph().as_default():
    variables = {name: tf.get_variable(name, shape=value.shape,
                                       dtype=tf.float32,
                                       initializer=tf.zeros_initializer())
                 for name, value in sorted(arrays.items())}
    feeds = {name: tf.placeholder(tf.float32, value.shape)
             for name, value in arrays.items()}
    assign = tf.group(*[tf.assign(variables[n], feeds[n]) for n in feeds])
    saver = tf.train.Saver(var_list=variables, save_relative_paths=True)
    with tf.Session() as sess:
      sess.run(assign, {feeds[n]: arrays[n] for n in feeds})
      saver.save(sess, prefix, write_meta_graph=False)


def read_hf_config(hf_dir):
  path = os.path.join(hf_dir, "config.json")
  if not os.path.exists(path):
    raise HfConvertError("%s has no config.json: not a Hugging Face model "
                         "directory" % hf_dir)
  with open(path) as f:
    try:
      return json.load(f)
    except ValueError as e:
      raise HfConvertError("%s: not valid JSON (%s)" % (path, e)) from e


def build_output(hf_dir, tmp_dir):
  """Writes the checkpoint, config and SentencePiece model into `tmp_dir`;
  returns the TF variable names written."""
  config = hf_convert.from_hf_config(read_hf_config(hf_dir))
  spm_path = os.path.join(hf_dir, export_hf.SPM_FILE)
  if not os.path.exists(spm_path):
    raise HfConvertError("%s has no %s: the SentencePiece model is needed to "
                         "tokenize for the checkpoint" % (hf_dir,
                                                          export_hf.SPM_FILE))
  with open(spm_path, "rb") as f:
    spm_bytes = f.read()
  pieces = export_hf.hf_tokenizer.load(spm_bytes).get_piece_size()
  if pieces != config["vocab_size"]:
    raise HfConvertError("%s has %d pieces but vocab_size is %d" % (
        spm_path, pieces, config["vocab_size"]))
  arrays = convert(read_weights(hf_dir), config)
  write_checkpoint(arrays, os.path.join(tmp_dir, CHECKPOINT_NAME))
  with open(os.path.join(tmp_dir, CONFIG_FILE), "w") as f:
    f.write(json.dumps(config, indent=2) + "\n")
  with open(os.path.join(tmp_dir, export_hf.SPM_FILE), "wb") as f:
    f.write(spm_bytes)
  return sorted(arrays)


def _publish(hf_dir, output_dir):
  """Builds the output in a temporary directory, then moves it into place:
  whole when `output_dir` is new, file by file into an existing one."""
  if not os.path.exists(output_dir):
    with file_utils.atomic_dir(output_dir) as tmp:
      return build_output(hf_dir, tmp)
  tmp = file_utils.scratch_dir(".import_hf.tmp-", output_dir)
  try:
    names = build_output(hf_dir, tmp)
    for name in sorted(os.listdir(tmp)):
      os.replace(os.path.join(tmp, name), os.path.join(output_dir, name))
    return names
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def import_hf(hf_dir, output_dir, overwrite=False):
  """HF directory -> TF checkpoint directory; returns the variable names."""
  if not os.path.isdir(hf_dir):
    raise HfConvertError("--hf_dir %s does not exist" % hf_dir)
  export_hf.check_output_dir(output_dir, overwrite)
  if os.path.isdir(output_dir) and not os.listdir(output_dir):
    os.rmdir(output_dir)
  names = _publish(hf_dir, output_dir)
  vocab_record.write(output_dir, os.path.join(output_dir, export_hf.SPM_FILE))
  logging.info("Imported %s -> %s (%d variables)", hf_dir, output_dir,
               len(names))
  return names


def main(argv):
  del argv
  def body():
    for name in ("hf_dir", "output_dir"):
      if not flags.FLAGS[name].value:
        raise HfConvertError("--%s is required" % name)
    import_hf(flags.FLAGS.hf_dir, flags.FLAGS.output_dir,
              flags.FLAGS.overwrite)
  export_hf.run_cli("import_hf", body)


if __name__ == "__main__":
  flags.DEFINE_string("hf_dir", None, "The Hugging Face ALBERT directory.")
  flags.DEFINE_string("output_dir", None,
                      "The TF checkpoint directory to write.")
  flags.DEFINE_bool("overwrite", False,
                    "Replace the imported files in a non-empty --output_dir.")
  app.run(main)
