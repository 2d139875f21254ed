r"""Exports an ALBERT checkpoint as a TF2-loadable SavedModel (feature extractor).

Upstream exported a TF1 Hub module (`hub.create_module_spec`), a format TF2
can no longer build. This writes a SavedModel instead, with the same
signature names: `tokens` (sequence_output, pooled_output), also the serving
default, and `tokenization_info`; when the checkpoint has run_pretraining's
cls/ heads, also `mlm` (+ mlm_positions -> mlm_logits) and `sop`
(-> sop_log_probs). Load it with
`tf.saved_model.load(path).signatures["tokens"]`.

Unlike upstream: --export_path may be gs:// (written locally, then copied);
an existing non-empty directory is refused, and a previous export (a
directory with saved_model.pb) is replaced only with --overwrite; the
SentencePiece model is recorded in assets/spm_record.json. Bad input gives
one `export_to_tfhub: error:` line and exit status 1.

--precision=bf16 computes the encoder in bfloat16 (float32 variables read
through casts; layer norm, the attention softmax and the outputs float32:
modeling.AlbertModel's compute_dtype); the precision is recorded in
assets/export_options.json.
"""
import contextlib
import json
import os
import shutil
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow.compat.v1 as tf

from albert import file_utils
from albert import modeling
from albert import run_pretraining
from albert import vocab_record

FLAGS = flags.FLAGS


class ExportDirError(ValueError):
  """An --export_dir that must not be written (reported without a trace)."""


SAVED_MODEL_FILE = "saved_model.pb"
EXPORT_OPTIONS_FILE = "export_options.json"
PRECISIONS = {"fp32": tf.float32, "bf16": tf.bfloat16}


def check_export_dir(export_dir, overwrite=False):
  """Whether `export_dir` holds a previous export that will be replaced.

  A missing or empty directory is written; a previous export (a directory
  with saved_model.pb) only with `overwrite`; anything else never, since it
  may be a training run or the user's own files.
  """
  if not export_dir:
    raise ExportDirError("--export_dir is empty")
  if not tf.io.gfile.exists(export_dir):
    return False
  if not tf.io.gfile.isdir(export_dir):
    raise ExportDirError("--export_dir %s exists and is not a directory"
                         % export_dir)
  if not tf.io.gfile.listdir(export_dir):
    return False
  is_export = tf.io.gfile.exists(os.path.join(export_dir, SAVED_MODEL_FILE))
  if not is_export:
    raise ExportDirError(
        "--export_dir %s is not empty and holds no SavedModel (no %s): "
        "choose a new directory; nothing was written" % (export_dir,
                                                         SAVED_MODEL_FILE))
  if not overwrite:
    raise ExportDirError(
        "--export_dir %s holds a previous export: pass --overwrite to "
        "replace it, or choose a new directory" % export_dir)
  return True


@contextlib.contextmanager
def _replacing(export_dir, previous):
  """Moves a previous export aside while the new one is written; deletes it
  on success, puts it back on failure. Object stores cannot rename a
  directory: there the previous export is deleted first."""
  if not previous:
    if tf.io.gfile.exists(export_dir):
      tf.io.gfile.remove(export_dir)  # empty: atomic_dir wants none
    yield
    return
  if not file_utils.is_local(export_dir):
    tf.io.gfile.rmtree(export_dir)
    yield
    return
  aside = file_utils.temp_path(os.path.abspath(export_dir))
  os.rename(export_dir, aside)
  try:
    yield
  except BaseException:
    if not os.path.exists(export_dir):
      os.rename(aside, export_dir)
    raise
  shutil.rmtree(aside)


def check_checkpoint_variables(checkpoint_path, variables=None):
  """Raises ValueError unless the checkpoint has every variable, with its
  shape (extra ones are ignored).

  `variables`: {name in the checkpoint: variable}; by default every global
  variable of the default graph under its own name."""
  if variables is None:
    variables = {v.op.name: v for v in tf.global_variables()}
  problems = file_utils.checkpoint_shape_problems(
      checkpoint_path,
      {name: v.shape.as_list() for name, v in variables.items()})
  if not problems:
    return
  name, saved_shape, shape = problems[0]
  if saved_shape is None:
    raise ValueError("Checkpoint %s has no variable %s" %
                     (checkpoint_path, name))
  raise ValueError("Variable %s: checkpoint shape %s, model shape %s" %
                   (name, saved_shape, shape))


def _signature_defs(signatures):
  info = tf.saved_model.utils.build_tensor_info
  # build_signature_def, not predict_signature_def: the latter refuses a
  # signature without inputs (tokenization_info).
  return {
      name: tf.saved_model.signature_def_utils.build_signature_def(
          inputs={k: info(v) for k, v in ins.items()},
          outputs={k: info(v) for k, v in outs.items()},
          method_name=tf.saved_model.signature_constants.PREDICT_METHOD_NAME)
      for name, (ins, outs) in signatures.items()
  }


def restore_sources(checkpoint_path):
  """[(checkpoint, {name in the checkpoint: variable})] that together hold
  every global variable of the default graph.

  `checkpoint_path`: one checkpoint for all variables, or {scope:
  checkpoint}: the variables under "scope/" are read from that checkpoint
  without the prefix (several fine-tuned models side by side in one graph).
  """
  variables = tf.global_variables()
  if isinstance(checkpoint_path, str):
    return [(checkpoint_path, {v.op.name: v for v in variables})]
  sources, covered = [], set()
  for scope, path in sorted(checkpoint_path.items()):
    prefix = scope.rstrip("/") + "/"
    names = {v.op.name[len(prefix):]: v for v in variables
             if v.op.name.startswith(prefix)}
    sources.append((path, names))
    covered.update(v.op.name for v in names.values())
  missing = [v.op.name for v in variables if v.op.name not in covered]
  if missing:
    raise ValueError("Variable %s is under none of the scopes %s" %
                     (missing[0], ", ".join(sorted(checkpoint_path))))
  return sources


def save_graph_as_saved_model(export_dir, checkpoint_path, signatures,
                              assets=(), init_op=None, overwrite=False,
                              spm_model_file=None):
  """Restores the current default graph's variables and writes a SavedModel.

  Args:
    export_dir: final directory, on any tf.io.gfile filesystem (gs://...).
      Written in a local temporary directory, then renamed or copied into
      place (file_utils.atomic_dir): a failed export leaves nothing behind.
      See check_export_dir for what may already be there.
    checkpoint_path: checkpoint prefix holding every global variable of the
      graph (extra variables in the checkpoint are ignored), or {scope:
      checkpoint} (restore_sources).
    signatures: dict name -> (inputs dict, outputs dict) of tensors.
    assets: asset file-path tensors (tf.constant of a path) to copy along.
    init_op: op run when the SavedModel is loaded (e.g. table init).
    overwrite: replace a previous export at `export_dir`.
    spm_model_file: recorded in assets/spm_record.json (albert.vocab_record)
      when given.
  Raises:
    ExportDirError: `export_dir` may not be written.
  """
  previous = check_export_dir(export_dir, overwrite)
  graph = tf.get_default_graph()
  sources = restore_sources(checkpoint_path)
  for path, variables in sources:
    check_checkpoint_variables(path, variables)
  for asset in assets:
    graph.add_to_collection(tf.GraphKeys.ASSET_FILEPATHS, asset)
  with _replacing(export_dir, previous):
    with file_utils.atomic_dir(export_dir) as tmp_dir:
      with tf.Session(graph=graph) as sess:
        for path, variables in sources:
          tf.train.Saver(variables).restore(sess, path)
        builder = tf.saved_model.Builder(tmp_dir)
        builder.add_meta_graph_and_variables(
            sess, [tf.saved_model.tag_constants.SERVING],
            signature_def_map=_signature_defs(signatures),
            assets_collection=graph.get_collection(
                tf.GraphKeys.ASSET_FILEPATHS),
            main_op=init_op, strip_default_attrs=True)
        builder.save()
      if spm_model_file:
        vocab_record.write(os.path.join(tmp_dir, "assets"), spm_model_file)
  logging.info("SavedModel written to %s (signatures: %s)", export_dir,
               ", ".join(sorted(signatures)))
  return export_dir


def has_pretraining_heads(checkpoint_path):
  """Whether the checkpoint has run_pretraining's cls/ (MLM, SOP) heads."""
  names = tf.train.load_checkpoint(
      checkpoint_path).get_variable_to_shape_map()
  return all(n in names for n in ("cls/predictions/output_bias",
                                  "cls/seq_relationship/output_weights"))


def _head_signatures(albert_config, model, inputs):
  """Upstream's `mlm` and `sop` signatures, built by run_pretraining's own
  heads (same variables, same maths)."""
  mlm_positions = tf.placeholder(tf.int32, [None, None], "mlm_positions")
  zeros = tf.zeros_like(mlm_positions)
  _, _, mlm_log_probs = run_pretraining.get_masked_lm_output(
      albert_config, model.get_sequence_output(), model.get_embedding_table(),
      mlm_positions, zeros, tf.cast(zeros, tf.float32))
  # Upstream returns logits: the input of the head's log_softmax.
  mlm_logits = mlm_log_probs.op.inputs[0]
  _, _, sop_log_probs = run_pretraining.get_sentence_order_output(
      albert_config, model.get_pooled_output(),
      tf.zeros_like(inputs["input_ids"][:, 0]))
  encoder = dict(sequence_output=model.get_sequence_output(),
                 pooled_output=model.get_pooled_output())
  return {
      "mlm": (dict(inputs, mlm_positions=mlm_positions),
              dict(encoder, mlm_logits=mlm_logits)),
      "sop": (dict(inputs), dict(encoder, sop_log_probs=sop_log_probs)),
  }


def build_encoder_signatures(albert_config, use_einsum=True, heads=False,
                             precision="fp32"):
  """Placeholders → AlbertModel in inference mode; returns the signatures
  (with `heads`, also `mlm` and `sop`)."""
  input_ids = tf.placeholder(tf.int32, [None, None], "input_ids")
  input_mask = tf.placeholder(tf.int32, [None, None], "input_mask")
  segment_ids = tf.placeholder(tf.int32, [None, None], "segment_ids")
  # Only a low precision passes compute_dtype (fp32 is upstream's graph).
  low = {"compute_dtype": PRECISIONS[precision]} if precision != "fp32" else {}
  model = modeling.AlbertModel(
      config=albert_config, is_training=False, input_ids=input_ids,
      input_mask=input_mask, token_type_ids=segment_ids,
      use_one_hot_embeddings=False, use_einsum=use_einsum, **low)
  inputs = dict(input_ids=input_ids, input_mask=input_mask,
                segment_ids=segment_ids)
  outputs = dict(sequence_output=model.get_sequence_output(),
                 pooled_output=model.get_pooled_output())
  signatures = {"tokens": (inputs, outputs),
                tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY:
                    (inputs, outputs)}
  if heads:
    signatures.update(_head_signatures(albert_config, model, inputs))
  return signatures


def export_encoder(albert_config_file, checkpoint, export_path,
                   spm_model_file=None, do_lower_case=True, use_einsum=True,
                   overwrite=False, precision="fp32"):
  """Writes the encoder SavedModel; returns its path."""
  if precision not in PRECISIONS:
    raise ValueError("--precision must be one of %s, got %r" %
                     ("|".join(PRECISIONS), precision))
  for what, path in (("--albert_config_file", albert_config_file),
                     ("--spm_model_file", spm_model_file)):
    if path and not tf.io.gfile.exists(path):
      raise FileNotFoundError("%s %s: no such file" % (what, path))
  albert_config = modeling.AlbertConfig.from_json_file(albert_config_file)
  checkpoint_path = file_utils.resolve_checkpoint(
      checkpoint, "--checkpoint_name", FileNotFoundError)
  check_export_dir(export_path, overwrite)  # before the slow graph build
  options_dir = file_utils.scratch_dir("export-encoder-")
  options_file = os.path.join(options_dir, EXPORT_OPTIONS_FILE)
  with open(options_file, "w") as f:
    json.dump({"precision": precision, "use_einsum": use_einsum}, f)
  try:
    return _export_encoder_graph(
        albert_config, checkpoint_path, export_path, albert_config_file,
        spm_model_file, do_lower_case, use_einsum, overwrite, precision,
        options_file)
  finally:
    shutil.rmtree(options_dir, ignore_errors=True)


def _export_encoder_graph(albert_config, checkpoint_path, export_path,
                          albert_config_file, spm_model_file, do_lower_case,
                          use_einsum, overwrite, precision, options_file):
  """export_encoder's graph and SavedModel."""
  with tf.Graph().as_default():
    signatures = build_encoder_signatures(
        albert_config, use_einsum, has_pretraining_heads(checkpoint_path),
        precision)
    assets = [tf.constant(albert_config_file, name="config_file"),
              tf.constant(options_file, name="export_options")]
    info = {"do_lower_case": tf.constant(do_lower_case)}
    if spm_model_file:
      vocab_model = tf.constant(spm_model_file, name="vocab_model")
      assets.append(vocab_model)
      info["vocab_file"] = vocab_model
    signatures["tokenization_info"] = ({}, info)
    return save_graph_as_saved_model(export_path, checkpoint_path, signatures,
                                     assets=assets, overwrite=overwrite,
                                     spm_model_file=spm_model_file)


def define_flags():
  """Upstream's flags; defined only when run as a script, so importing
  this module from other tools cannot clash with their flags."""
  flags.DEFINE_string(
      "albert_directory", None,
      "Directory with albert_config.json, 30k-clean.model and the checkpoint "
      "(the layout of released ALBERT models).")
  flags.DEFINE_string(
      "checkpoint_name", "model.ckpt-best",
      "Checkpoint under albert_directory to export (a prefix, or a directory "
      "whose latest checkpoint is taken).")
  flags.DEFINE_string("albert_config_file", None,
                      "Overrides albert_directory/albert_config.json.")
  flags.DEFINE_string("spm_model_file", None,
                      "Overrides albert_directory/30k-clean.model (optional).")
  flags.DEFINE_bool("do_lower_case", True,
                    "Recorded in the tokenization_info signature.")
  flags.DEFINE_bool(
      "use_einsum", True,
      "Whether to use tf.einsum or tf.reshape+tf.matmul for dense layers. Must "
      "be set to False for TFLite compatibility.")
  flags.DEFINE_string("export_path", None, "Directory of the SavedModel "
                      "(any tf.io.gfile path, e.g. gs://).")
  flags.DEFINE_bool("overwrite", False,
                    "Replace a previous export at --export_path (only a "
                    "directory holding saved_model.pb is ever replaced).")
  flags.DEFINE_enum("precision", "fp32", list(PRECISIONS),
                    "bf16: the encoder computes in bfloat16 (float32 "
                    "variables, layer norm, softmax and outputs).")


def main(_):
  directory = FLAGS.albert_directory or ""
  config_file = FLAGS.albert_config_file or os.path.join(
      directory, "albert_config.json")
  spm_file = FLAGS.spm_model_file
  if spm_file is None and directory:
    candidate = os.path.join(directory, "30k-clean.model")
    spm_file = candidate if tf.io.gfile.exists(candidate) else None
  checkpoint = FLAGS.checkpoint_name
  if directory and not os.path.isabs(checkpoint):
    checkpoint = os.path.join(directory, checkpoint)
  try:
    export_encoder(config_file, checkpoint, FLAGS.export_path,
                   spm_model_file=spm_file, do_lower_case=FLAGS.do_lower_case,
                   use_einsum=FLAGS.use_einsum, overwrite=FLAGS.overwrite,
                   precision=FLAGS.precision)
  except (ValueError, FileNotFoundError, tf.errors.OpError) as e:
    sys.stderr.write("export_to_tfhub: error: %s\n" % getattr(e, "message",
                                                              e))
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("export_path")
  app.run(main)
