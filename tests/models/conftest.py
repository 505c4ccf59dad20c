"""Fixtures shared by the model tests."""

import pytest
from tensorflow.python.framework import config as tf_config


@pytest.fixture
def no_op_determinism():
    """TensorFlow's (process-wide) op determinism off for one test: Keras turns XLA off while
    it is on."""
    was_on = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    yield
    if was_on:
        tf_config.enable_op_determinism()
