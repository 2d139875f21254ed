"""albert.export_to_tfhub's checkpoint check (the exports themselves are
tested in tests/bio/serving, which build on them)."""
import pytest
import tensorflow.compat.v1 as tf

from albert import export_to_tfhub


def _save(path, shapes):
  with tf.Graph().as_default():
    for name, shape in shapes.items():
      tf.get_variable(name, shape)
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      return tf.train.Saver().save(sess, path)


def test_check_checkpoint_variables(tmp_path):
  ckpt = _save(str(tmp_path / "model.ckpt"),
               {"a/kernel": [2, 3], "b": [4], "extra": [1]})
  with tf.Graph().as_default():
    tf.get_variable("a/kernel", [2, 3])
    tf.get_variable("b", [4])
    export_to_tfhub.check_checkpoint_variables(ckpt)  # extra is ignored
    tf.get_variable("c", [1])
    with pytest.raises(ValueError, match=r"model.ckpt has no variable c$"):
      export_to_tfhub.check_checkpoint_variables(ckpt)
  with tf.Graph().as_default():
    tf.get_variable("a/kernel", [3, 2])
    tf.get_variable("z", [1])
    # The first problem in name order.
    with pytest.raises(ValueError, match=r"^Variable a/kernel: checkpoint "
                       r"shape \[2, 3\], model shape \[3, 2\]$"):
      export_to_tfhub.check_checkpoint_variables(ckpt)


def test_restore_sources_map_scopes_to_checkpoints(tmp_path):
  first = _save(str(tmp_path / "one.ckpt"), {"w": [2]})
  second = _save(str(tmp_path / "two.ckpt"), {"w": [3]})
  with tf.Graph().as_default():
    w0 = tf.get_variable("m0/w", [2])
    w1 = tf.get_variable("m1/w", [3])
    sources = export_to_tfhub.restore_sources({"m0": first, "m1/": second})
    assert sources == [(first, {"w": w0}), (second, {"w": w1})]
    for path, variables in sources:
      export_to_tfhub.check_checkpoint_variables(path, variables)
    with pytest.raises(ValueError, match=r"model shape \[3\]"):
      export_to_tfhub.check_checkpoint_variables(first, {"w": w1})
    tf.get_variable("loose", [1])
    with pytest.raises(ValueError, match="Variable loose is under none of "
                       "the scopes m0, m1/"):
      export_to_tfhub.restore_sources({"m0": first, "m1/": second})
    (path, variables), = export_to_tfhub.restore_sources(first)
    assert path == first and set(variables) == {"m0/w", "m1/w", "loose"}
