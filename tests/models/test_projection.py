"""The vocabulary projection's written-out gradient against the closed form and Keras' Dense."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.projection import OutputProjection, project_to_vocabulary

RNG = np.random.default_rng(3)
X = RNG.normal(size=(3, 5, 4)).astype("float32")
W = RNG.normal(size=(4, 7)).astype("float32")
B = RNG.normal(size=(7,)).astype("float32")
UPSTREAM = RNG.normal(size=(3, 5, 7)).astype("float32")


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_values_and_gradients_match_the_closed_form(transposed, jit):
    matrix = tf.constant(W.T if transposed else W)
    x, bias = tf.constant(X), tf.constant(B)

    def run():
        with tf.GradientTape() as tape:
            tape.watch([x, matrix, bias])
            logits = project_to_vocabulary(x, matrix, bias, transposed)
        return logits, tape.gradient(logits, [x, matrix, bias], output_gradients=UPSTREAM)

    logits, (d_x, d_matrix, d_bias) = tf.function(run, jit_compile=True)() if jit else run()
    rows, upstream = X.reshape(-1, 4), UPSTREAM.reshape(-1, 7)
    np.testing.assert_allclose(logits.numpy(), X @ W + B, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_x.numpy(), UPSTREAM @ W.T, rtol=1e-5, atol=1e-5)
    d_w = rows.T @ upstream
    np.testing.assert_allclose(d_matrix.numpy(), d_w.T if transposed else d_w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_bias.numpy(), upstream.sum(0), rtol=1e-5, atol=1e-5)


def test_layer_matches_keras_dense_with_the_same_weights():
    keras.utils.set_random_seed(0)
    ours, dense = OutputProjection(7), keras.layers.Dense(7)
    ours.build((None, 5, 4))
    dense.build((None, 5, 4))
    ours.set_weights([W, B])
    dense.set_weights([W, B])
    grads = []
    for layer in (ours, dense):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(tf.constant(X)) * UPSTREAM)
        grads.append([g.numpy() for g in tape.gradient(loss, layer.trainable_weights)])
    for got, want in zip(*grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours(X).numpy(), dense(X).numpy(), rtol=1e-6)
    assert OutputProjection.from_config(ours.get_config()).units == 7
