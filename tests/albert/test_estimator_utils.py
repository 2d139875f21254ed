"""Tests for albert.estimator_utils' progress hook: the loss it logs is the
mean of the losses of the steps since its last line."""
from absl import logging
import numpy as np
import tensorflow.compat.v1 as tf

from albert import estimator_utils


def _train_and_capture(record_loss, steps, every):
  """Runs `steps` SGD steps on (w - 3)^2 with the hook; returns the losses
  computed by NumPy and the hook's log lines."""
  lines = []

  def capture(msg, *args):
    lines.append(msg % args)

  graph = tf.Graph()
  with graph.as_default():
    step = tf.train.get_or_create_global_step()
    w = tf.get_variable("w", initializer=0.0)
    loss = tf.square(w - 3.0)
    if record_loss:
      estimator_utils.record_training_loss(loss, use_tpu=False)
    train = tf.train.GradientDescentOptimizer(0.1).minimize(
        loss, global_step=step)
    hook = estimator_utils.ThroughputHook(batch_size=4, max_steps=steps,
                                          every_n_steps=every)
    original = logging.info
    logging.info = capture
    try:
      with tf.train.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(steps):
          sess.run(train)
    finally:
      logging.info = original
  # The loss a step reports is computed before its update.
  value, expected = 0.0, []
  for _ in range(steps):
    expected.append((value - 3.0) ** 2)
    value -= 0.1 * 2 * (value - 3.0)
  return np.array(expected), lines


def _windows(losses, logged):
  """Splits `losses` into consecutive windows whose means are `logged`;
  returns their lengths, or None."""
  lengths, start = [], 0
  for value in logged:
    for end in range(start + 1, len(losses) + 1):
      if np.isclose(losses[start:end].mean(), value, rtol=0, atol=6e-5):
        lengths.append(end - start)
        start = end
        break
    else:
      return None
  return lengths


def test_hook_logs_the_mean_loss_of_its_window():
  losses, lines = _train_and_capture(record_loss=True, steps=12, every=3)
  assert lines and all(l.startswith("step ") for l in lines)
  logged = [float(l.split("loss ")[1].split(",")[0]) for l in lines]
  lengths = _windows(losses, logged)
  # Each line covers the steps since the previous one (the first also the
  # run that started the clock at step 1), not one step and not all steps
  # so far: lines at steps 4, 7 and 10.
  assert lengths == [4, 3, 3], (losses, logged)
  assert [l.split(":")[0] for l in lines] == [
      "step 4/12", "step 7/12", "step 10/12"]
  assert " steps/s, " in lines[0]


def test_hook_without_a_recorded_loss_logs_speed_only():
  _, lines = _train_and_capture(record_loss=False, steps=12, every=3)
  assert len(lines) == 3 and not any("loss" in l for l in lines)
  assert all(" steps/s, " in l for l in lines)
