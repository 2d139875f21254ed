"""ALBERT, ported from google-research/albert (TF 1.15) to TF 2.15 tf.compat.v1."""
