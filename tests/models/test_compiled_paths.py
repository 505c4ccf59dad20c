"""The layers' XLA paths (models.compiled) against Keras' own layers: same values and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.train import build_model
from models import dropout as dropout_module
from models.compiled import use_compiled_paths
from models.dropout import MultiHeadAttention, batched_matmul
from models.layer_norm import LayerNormalization, layer_norm
from models.projection import OutputProjection, RowDense, affine
from pipeline.config import TrainConfig

RNG = np.random.default_rng(5)


def _run(fn, jit):
    return tf.function(fn, jit_compile=True)() if jit else fn()


@pytest.mark.parametrize("jit", [False, True])
def test_layer_norm_matches_the_closed_form(jit):
    x = tf.constant(RNG.normal(size=(3, 4, 6)).astype("float32") * 3 + 1)
    gamma = tf.constant(RNG.normal(size=(6,)).astype("float32"))
    beta = tf.constant(RNG.normal(size=(6,)).astype("float32"))
    upstream = RNG.normal(size=(3, 4, 6)).astype("float32")

    def run():
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y = layer_norm(x, gamma, beta, 1e-6)
        return y, tape.gradient(y, [x, gamma, beta], output_gradients=upstream)

    y, (d_x, d_gamma, d_beta) = _run(run, jit)
    xs, g = x.numpy().reshape(-1, 6).astype("float64"), upstream.reshape(-1, 6)
    mean, var = xs.mean(1, keepdims=True), xs.var(1, keepdims=True)
    x_hat = (xs - mean) / np.sqrt(var + 1e-6)
    np.testing.assert_allclose(
        y.numpy().reshape(-1, 6), x_hat * gamma.numpy() + beta.numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(d_gamma.numpy(), (g * x_hat).sum(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d_beta.numpy(), g.sum(0), rtol=1e-5, atol=1e-5)
    # d x = (g' - mean(g') - x_hat mean(g' x_hat)) / sqrt(var + eps), g' = g * gamma.
    scaled = g * gamma.numpy()
    want = (
        scaled - scaled.mean(1, keepdims=True) - x_hat * (scaled * x_hat).mean(1, keepdims=True)
    ) / np.sqrt(var + 1e-6)
    np.testing.assert_allclose(d_x.numpy().reshape(-1, 6), want, rtol=1e-4, atol=1e-5)


def test_layer_norm_layer_matches_keras():
    x = tf.constant(RNG.normal(size=(2, 5, 8)).astype("float32"))
    ours, theirs = LayerNormalization(epsilon=1e-6), keras.layers.LayerNormalization(epsilon=1e-6)
    ours.compiled = True
    for layer in (ours, theirs):
        layer.build(x.shape)
    weights = [RNG.normal(size=(8,)).astype("float32") for _ in range(2)]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append([y.numpy()] + [g.numpy() for g in grads])
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    config = ours.get_config()
    assert LayerNormalization.from_config(config).epsilon == 1e-6


@pytest.mark.parametrize("jit", [False, True])
def test_batched_matmul_gradients_are_the_transposed_products(jit):
    a = tf.constant(RNG.normal(size=(2, 3, 4, 5)).astype("float32"))
    b = tf.constant(RNG.normal(size=(2, 3, 5, 6)).astype("float32"))
    upstream = RNG.normal(size=(2, 3, 4, 6)).astype("float32")

    def run():
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            c = batched_matmul(a, b)
        return c, tape.gradient(c, [a, b], output_gradients=upstream)

    c, (d_a, d_b) = _run(run, jit)
    an, bn = a.numpy(), b.numpy()
    np.testing.assert_allclose(c.numpy(), an @ bn, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_a.numpy(), upstream @ bn.swapaxes(-1, -2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_b.numpy(), an.swapaxes(-1, -2) @ upstream, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_attention_projections_match_keras_projections(cross, dropout, monkeypatch):
    """Self-attention projects queries, keys and values in one product, cross-attention keys
    and values in one: the same outputs and weight gradients as the layer's own projections."""
    x = tf.constant(RNG.normal(size=(2, 5, 8)).astype("float32"))
    memory = tf.constant(RNG.normal(size=(2, 7, 8)).astype("float32"))
    keys = memory if cross else x
    mask = tf.constant(RNG.random((2, 5, keys.shape[1])) > 0.3)
    layer = MultiHeadAttention(2, 4, dropout=dropout)
    layer.hash_masks = True
    layer(x, keys, attention_mask=mask)
    generator = getattr(layer._dropout_layer, "seed_generator", None)  # none at rate 0
    seed_state = generator.state.numpy() if generator else None
    widths = []  # the fused products' output widths
    monkeypatch.setattr(
        dropout_module,
        "affine",
        lambda x, m, b, **k: widths.append(int(m.shape[1])) or affine(x, m, b, **k),
    )
    results = []
    for compiled in (True, False):
        layer.compiled = compiled
        if generator:
            generator.state.assign(seed_state)  # the same dropout masks for both
        with tf.GradientTape() as tape:
            y = layer(x, keys, attention_mask=mask, training=True, use_causal_mask=not cross)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, layer.trainable_weights)
        results.append([y.numpy()] + [g.numpy() for g in grads])
    assert len(results[0]) == 9  # output, 4 kernels and 4 biases
    # One product for queries, keys and values, or queries then keys and values; the output.
    assert widths == ([8, 16, 8] if cross else [24, 8])
    for got, want in zip(*results, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit", ["true", "false"])
def test_build_model_uses_the_compiled_paths_exactly_when_xla_compiles(jit, no_op_determinism):
    cfg = TrainConfig(preset="tiny", jit_compile=jit, deterministic=False)
    model = build_model(cfg, 20, 20)
    kinds = (MultiHeadAttention, LayerNormalization, RowDense)
    layers = [
        layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, kinds)
    ]
    # tiny: 3 attention layers, 7 layer norms (2 + 3 in the blocks, 2 final), 4 feed-forward
    # projections and the output projection.
    counts = [sum(isinstance(layer, kind) for layer in layers) for kind in kinds]
    assert counts == [3, 7, 5] and any(isinstance(lay, OutputProjection) for lay in layers)
    assert {layer.compiled for layer in layers} == {jit == "true"}
    assert model.fused_loss is (jit == "true")
    use_compiled_paths(model, jit != "true")
    assert {layer.compiled for layer in layers} == {jit != "true"}
    assert model.fused_loss is (jit != "true")
