"""The written-out gradients of `affine` against the closed form, and RowDense against Dense."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import projection
from models.projection import OutputProjection, RowDense, affine

RNG = np.random.default_rng(3)
X = RNG.normal(size=(3, 5, 4)).astype("float32")
W = RNG.normal(size=(4, 7)).astype("float32")
B = RNG.normal(size=(7,)).astype("float32")
UPSTREAM = RNG.normal(size=(3, 5, 7)).astype("float32")


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("fold_bias", [False, True])
def test_values_and_gradients_match_the_closed_form(transposed, jit, fold_bias):
    matrix = tf.constant(W.T if transposed else W)
    x, bias = tf.constant(X), tf.constant(B)

    def run():
        with tf.GradientTape() as tape:
            tape.watch([x, matrix, bias])
            logits = affine(x, matrix, bias, transposed, fold_bias=fold_bias)
        return logits, tape.gradient(logits, [x, matrix, bias], output_gradients=UPSTREAM)

    logits, (d_x, d_matrix, d_bias) = tf.function(run, jit_compile=True)() if jit else run()
    rows, upstream = X.reshape(-1, 4), UPSTREAM.reshape(-1, 7)
    np.testing.assert_allclose(logits.numpy(), X @ W + B, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_x.numpy(), UPSTREAM @ W.T, rtol=1e-5, atol=1e-5)
    d_w = rows.T @ upstream
    np.testing.assert_allclose(d_matrix.numpy(), d_w.T if transposed else d_w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_bias.numpy(), upstream.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer_class", [RowDense, OutputProjection])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_layer_matches_keras_dense_with_the_same_weights(layer_class, activation, monkeypatch):
    calls = []
    monkeypatch.setattr(projection, "affine", lambda *a, **k: calls.append(k) or affine(*a, **k))
    keras.utils.set_random_seed(0)
    ours, dense = (
        layer_class(7, activation=activation),
        keras.layers.Dense(7, activation=activation),
    )
    ours.compiled = True
    ours.build((None, 5, 4))
    dense.build((None, 5, 4))
    ours.set_weights([W, B])
    dense.set_weights([W, B])
    grads, outputs = [], []
    for layer in (ours, dense):
        with tf.GradientTape() as tape:
            y = layer(tf.constant(X), training=True)
            loss = tf.reduce_sum(y * UPSTREAM)
        outputs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, layer.trainable_weights)])
    for got, want in zip(*grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6, atol=1e-6)
    if activation:
        assert outputs[0].min() == 0.0  # the activation ran
    # The compiled path ran, once, folding the bias for the vocabulary only.
    assert calls == [{"fold_bias": layer_class is OutputProjection}]
    assert layer_class.from_config(ours.get_config()).units == 7
