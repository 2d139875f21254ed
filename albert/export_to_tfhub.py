r"""Exports an ALBERT checkpoint as a TF2-loadable SavedModel (feature extractor).

Upstream exported a TF1 Hub module (`hub.create_module_spec`), a format TF2
can no longer build. This writes a SavedModel instead, with the same
signature names: `tokens` (sequence_output, pooled_output), also the serving
default, and `tokenization_info`. Load it with `tf.saved_model.load(path).signatures["tokens"]`.
"""
import os
import shutil
import tempfile

from absl import app
from absl import flags
from absl import logging
import tensorflow.compat.v1 as tf

from albert import file_utils
from albert import modeling

FLAGS = flags.FLAGS


def save_graph_as_saved_model(export_dir, checkpoint_path, signatures,
                              assets=(), init_op=None):
  """Restores the current default graph's variables and writes a SavedModel.

  Args:
    export_dir: final directory; written under a temporary name and renamed,
      so a failed export leaves nothing behind.
    checkpoint_path: checkpoint prefix holding every global variable of the
      graph (extra variables in the checkpoint are ignored).
    signatures: dict name -> (inputs dict, outputs dict) of tensors.
    assets: asset file-path tensors (tf.constant of a path) to copy along.
    init_op: op run when the SavedModel is loaded (e.g. table init).
  """
  graph = tf.get_default_graph()
  reader = tf.train.load_checkpoint(checkpoint_path)
  shapes = reader.get_variable_to_shape_map()
  for var in tf.global_variables():
    name = var.op.name
    if name not in shapes:
      raise ValueError("Checkpoint %s has no variable %s" %
                       (checkpoint_path, name))
    if list(shapes[name]) != var.shape.as_list():
      raise ValueError("Variable %s: checkpoint shape %s, model shape %s" %
                       (name, shapes[name], var.shape.as_list()))
  for asset in assets:
    graph.add_to_collection(tf.GraphKeys.ASSET_FILEPATHS, asset)
  info = tf.saved_model.utils.build_tensor_info
  # build_signature_def, not predict_signature_def: the latter refuses a
  # signature without inputs (tokenization_info).
  signature_defs = {
      name: tf.saved_model.signature_def_utils.build_signature_def(
          inputs={k: info(v) for k, v in ins.items()},
          outputs={k: info(v) for k, v in outs.items()},
          method_name=tf.saved_model.signature_constants.PREDICT_METHOD_NAME)
      for name, (ins, outs) in signatures.items()
  }
  parent = os.path.dirname(os.path.abspath(export_dir))
  tf.io.gfile.makedirs(parent)
  tmp_dir = tempfile.mkdtemp(prefix=".export-", dir=parent)
  os.rmdir(tmp_dir)  # the builder insists on creating it
  try:
    with tf.Session(graph=graph) as sess:
      tf.train.Saver(tf.global_variables()).restore(sess, checkpoint_path)
      builder = tf.saved_model.Builder(tmp_dir)
      builder.add_meta_graph_and_variables(
          sess, [tf.saved_model.tag_constants.SERVING],
          signature_def_map=signature_defs,
          assets_collection=graph.get_collection(
              tf.GraphKeys.ASSET_FILEPATHS),
          main_op=init_op, strip_default_attrs=True)
      builder.save()
    if tf.io.gfile.exists(export_dir):
      shutil.rmtree(export_dir)
    os.replace(tmp_dir, export_dir)
  finally:
    if os.path.exists(tmp_dir):
      shutil.rmtree(tmp_dir)
  logging.info("SavedModel written to %s (signatures: %s)", export_dir,
               ", ".join(sorted(signatures)))
  return export_dir


def build_encoder_signatures(albert_config, use_einsum=True):
  """Placeholders → AlbertModel in inference mode; returns the signatures."""
  input_ids = tf.placeholder(tf.int32, [None, None], "input_ids")
  input_mask = tf.placeholder(tf.int32, [None, None], "input_mask")
  segment_ids = tf.placeholder(tf.int32, [None, None], "segment_ids")
  model = modeling.AlbertModel(
      config=albert_config, is_training=False, input_ids=input_ids,
      input_mask=input_mask, token_type_ids=segment_ids,
      use_one_hot_embeddings=False, use_einsum=use_einsum)
  inputs = dict(input_ids=input_ids, input_mask=input_mask,
                segment_ids=segment_ids)
  outputs = dict(sequence_output=model.get_sequence_output(),
                 pooled_output=model.get_pooled_output())
  signatures = {"tokens": (inputs, outputs),
                tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY:
                    (inputs, outputs)}
  return signatures


def export_encoder(albert_config_file, checkpoint, export_path,
                   spm_model_file=None, do_lower_case=True, use_einsum=True):
  """Writes the encoder SavedModel; returns its path."""
  albert_config = modeling.AlbertConfig.from_json_file(albert_config_file)
  checkpoint_path = file_utils.resolve_checkpoint(
      checkpoint, "--checkpoint_name", FileNotFoundError)
  with tf.Graph().as_default():
    signatures = build_encoder_signatures(albert_config, use_einsum)
    assets = [tf.constant(albert_config_file, name="config_file")]
    info = {"do_lower_case": tf.constant(do_lower_case)}
    if spm_model_file:
      vocab_model = tf.constant(spm_model_file, name="vocab_model")
      assets.append(vocab_model)
      info["vocab_file"] = vocab_model
    signatures["tokenization_info"] = ({}, info)
    return save_graph_as_saved_model(export_path, checkpoint_path, signatures,
                                     assets=assets)


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
  flags.DEFINE_string("export_path", None, "Directory of the SavedModel.")


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
  export_encoder(config_file, checkpoint, FLAGS.export_path,
                 spm_model_file=spm_file, do_lower_case=FLAGS.do_lower_case,
                 use_einsum=FLAGS.use_einsum)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("export_path")
  app.run(main)
