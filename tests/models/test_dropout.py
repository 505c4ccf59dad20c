"""Hash dropout masks: exact hash values, rate, seeding, XLA parity, and the layers using them."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from components.train import build_model
from models.dropout import (
    Dropout,
    MultiHeadAttention,
    hash_dropout,
    hash_keep_mask,
    use_hash_masks,
)
from pipeline.config import TrainConfig


def _mix(h):
    h = np.uint32(h)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint32(16)
        h = np.uint32(h * np.uint32(0x85EBCA6B))
        h ^= h >> np.uint32(13)
        h = np.uint32(h * np.uint32(0xC2B2AE35))
        h ^= h >> np.uint32(16)
    return h


def _reference_mask(rows, columns, rate, seed):
    """The documented hash, one element at a time in NumPy."""
    golden = np.uint32(0x9E3779B1)
    s0, s1 = (np.uint32(v % 2**32) for v in seed)
    with np.errstate(over="ignore"):
        key = _mix(np.uint32(s0 * golden + _mix(np.uint32(s1 + np.uint32(0x7F4A7C15)))))
        out = np.zeros((rows, columns), bool)
        for r in range(rows):
            row_key = _mix(np.uint32(np.uint32(r) * golden + key))
            for c in range(columns):
                h = _mix(np.uint32(row_key + np.uint32(c) * golden))
                out[r, c] = h >= np.uint32(round(rate * 2**32))
    return out


def _mask(shape, rate, seed):
    return ops.convert_to_numpy(hash_keep_mask(shape, rate, np.array(seed, np.int64)))


def test_mask_is_the_documented_hash():
    expected = _reference_mask(6, 5, 0.5, (7, 11))
    np.testing.assert_array_equal(_mask((6, 5), 0.5, (7, 11)), expected)
    # Higher-rank shapes are the same hash over the shape flattened to (rows, last).
    np.testing.assert_array_equal(_mask((2, 3, 5), 0.5, (7, 11)), expected.reshape(2, 3, 5))


def test_rate_and_independence_across_seeds():
    a = _mask((1000, 1000), 0.1, (3, 4))
    b = _mask((1000, 1000), 0.1, (3, 5))
    # Binomial standard deviation over 10^6 elements is 0.0003.
    assert abs((1 - a.mean()) - 0.1) < 0.002
    # Two independent masks agree where both keep or both drop: 0.9^2 + 0.1^2 = 0.82.
    assert abs((a == b).mean() - 0.82) < 0.003
    # Neighbouring rows and columns are not correlated either.
    assert abs((a[:, 1:] == a[:, :-1]).mean() - 0.82) < 0.003
    assert abs((a[1:] == a[:-1]).mean() - 0.82) < 0.003
    np.testing.assert_array_equal(a, _mask((1000, 1000), 0.1, (3, 4)))


def test_xla_compiled_mask_is_identical():
    seed = tf.constant([5, 9], tf.int64)
    compiled = tf.function(lambda s: hash_keep_mask((4, 8, 16, 16), 0.1, s), jit_compile=True)
    np.testing.assert_array_equal(compiled(seed).numpy(), _mask((4, 8, 16, 16), 0.1, (5, 9)))


def test_hash_dropout_scales_kept_values():
    generator = keras.random.SeedGenerator(3)
    seed = ops.convert_to_numpy(generator.state.value)
    x = np.arange(1, 41, dtype="float32").reshape(8, 5)
    out = ops.convert_to_numpy(hash_dropout(x, 0.25, generator))
    keep = _mask((8, 5), 0.25, seed)
    np.testing.assert_allclose(out, np.where(keep, x / 0.75, 0.0), rtol=1e-6)
    np.testing.assert_array_equal(ops.convert_to_numpy(hash_dropout(x, 1.0, generator)), 0.0)
    # The generator advanced: the next call draws another mask.
    again = ops.convert_to_numpy(hash_dropout(x, 0.25, generator))
    assert not np.array_equal(again != 0, out != 0)


def test_dropout_layer_modes():
    x = np.ones((16, 32), "float32")
    layer, reference = Dropout(0.2, seed=1), keras.layers.Dropout(0.2, seed=1)
    # Hash masks off: exactly Keras' dropout with the same seed.
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x, training=True)),
        ops.convert_to_numpy(reference(x, training=True)),
    )
    layer.hash_masks = True
    seed = ops.convert_to_numpy(layer.seed_generator.state.value)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x, training=True)),
        np.where(_mask((16, 32), 0.2, seed), 1 / 0.8, 0.0),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)


def _attention_pair():
    ours = MultiHeadAttention(2, 4, dropout=0.3, seed=7)
    keras_layer = keras.layers.MultiHeadAttention(2, 4, dropout=0.3, seed=7)
    for layer in (ours, keras_layer):
        layer.build((2, 3, 8), (2, 5, 8))
    keras_layer.set_weights(ours.get_weights())
    return ours, keras_layer


def test_attention_equals_keras_without_hash_masks():
    ours, keras_layer = _attention_pair()
    rng = np.random.default_rng(0)
    q, v = (
        rng.normal(size=(2, 3, 8)).astype("float32"),
        rng.normal(size=(2, 5, 8)).astype("float32"),
    )
    mask = np.array([[[True] * 4 + [False]] * 3, [[True] * 5] * 3])
    for training in (False, True):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(ours(q, v, attention_mask=mask, training=training)),
            ops.convert_to_numpy(keras_layer(q, v, attention_mask=mask, training=training)),
        )


def test_attention_with_hash_masks_drops_probabilities():
    ours, _ = _attention_pair()
    ours.hash_masks = True
    rng = np.random.default_rng(1)
    q, v = (
        rng.normal(size=(2, 3, 8)).astype("float32"),
        rng.normal(size=(2, 5, 8)).astype("float32"),
    )
    mask = np.array([[[True] * 4 + [False]] * 3, [[True] * 5] * 3])
    seed = ops.convert_to_numpy(ours._dropout_layer.seed_generator.state.value)
    out, probs = ours(q, v, attention_mask=mask, training=True, return_attention_scores=True)
    probs = ops.convert_to_numpy(probs)  # (batch, heads, query, key), before dropout
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs[0, :, :, 4], 0.0)
    dropped = np.where(_mask(probs.shape, 0.3, seed), probs / 0.7, 0.0)
    values = ops.convert_to_numpy(ours._value_dense(v))  # (batch, key, heads, head_dim)
    context = np.einsum("bhqk,bkhd->bqhd", dropped, values)
    expected = ops.convert_to_numpy(ours._output_dense(context))
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", ["true", "false"])
def test_build_model_uses_hash_masks_exactly_when_xla_compiles(jit, no_op_determinism):
    cfg = TrainConfig(preset="tiny", jit_compile=jit, deterministic=False)
    model = build_model(cfg, 20, 20)
    flagged = [
        layer.hash_masks
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, (Dropout, MultiHeadAttention))
    ]
    # tiny has one encoder and one decoder block: 6 Dropout layers (embeddings; the encoder's
    # attention and feed-forward; the decoder's two attentions and feed-forward) and 3
    # attention layers, all switched together.
    assert len(flagged) == 9 and set(flagged) == {jit == "true"}
    assert bool(model.jit_compile) == (jit == "true")
    use_hash_masks(model, False)
    assert not any(
        layer.hash_masks
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, (Dropout, MultiHeadAttention))
    )
