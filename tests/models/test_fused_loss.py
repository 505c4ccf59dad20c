"""projected_cross_entropy and the fused training step: the same loss, gradients and metrics as
the logits-then-loss computation they replace."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.train import build_model
from models import transformer as transformer_module
from models.losses import MaskedCrossEntropy, projected_cross_entropy, token_log_stats
from pipeline.config import TrainConfig


def _inputs(positions=(3, 7), depth=6, vocab=11, seed=0):
    rng = np.random.default_rng(seed)
    features = tf.constant(rng.normal(size=(*positions, depth)), tf.float32)
    matrix = tf.constant(rng.normal(size=(depth, vocab)), tf.float32)
    bias = tf.constant(rng.normal(size=(vocab,)), tf.float32)
    labels = rng.integers(1, vocab, size=positions)
    labels[0, 4:] = 0  # padding
    labels[2, 6] = 0
    return features, matrix, bias, tf.constant(labels, tf.int64)


def _reference(features, matrix, bias, labels, eps):
    with tf.GradientTape() as tape:
        tape.watch([features, matrix, bias])
        logits = tf.matmul(features, matrix) + bias
        loss = tf.reduce_mean(MaskedCrossEntropy(eps).call(labels, logits))
    return loss, tape.gradient(loss, [features, matrix, bias]), token_log_stats(labels, logits)


def _fused(features, matrix, bias, labels, eps, chunks):
    with tf.GradientTape() as tape:
        tape.watch([features, matrix, bias])
        loss, stats = projected_cross_entropy(features, matrix, bias, labels, eps, chunks)
    gradients = tape.gradient(loss, [features, matrix, bias])
    return loss, gradients, (stats.lse, stats.true_logit, stats.row_max)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("chunks", [1, 4, 16])  # 21 positions: padded to 24, and to 32
def test_loss_gradients_and_stats_match_the_materialized_logits(jit, eps, chunks):
    inputs = _inputs()
    want = _reference(*inputs, eps)
    got = tf.function(_fused, jit_compile=jit)(*inputs, eps, chunks)
    # The loss is the mean over the 17 real tokens only.
    assert int(np.count_nonzero(inputs[3].numpy())) == 17
    np.testing.assert_allclose(got[0].numpy(), want[0].numpy(), rtol=1e-5)
    for g, w in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-6)
    for g, w in zip(got[2], want[2], strict=True):
        assert g.shape == (3, 7)
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def test_padding_alone_gives_zero_loss_and_gradients():
    features, matrix, bias, labels = _inputs()
    loss, gradients, _ = _fused(features, matrix, bias, tf.zeros_like(labels), 0.1, 4)
    assert float(loss) == 0.0
    assert all(float(tf.reduce_max(tf.abs(g))) == 0.0 for g in gradients)


def _step_results(fused: bool, share_embeddings: bool, batch, monkeypatch):
    traced = []

    def counting(*args, **kwargs):
        traced.append(True)
        return projected_cross_entropy(*args, **kwargs)

    monkeypatch.setattr(transformer_module, "projected_cross_entropy", counting)
    keras.utils.set_random_seed(3)
    cfg = TrainConfig(
        preset="tiny",
        jit_compile="true",
        deterministic=False,
        dropout=0.0,
        share_embeddings=share_embeddings,
    )
    model = build_model(cfg, 20, 20)
    assert model.fused_loss is True  # XLA steps fuse by default
    model.fused_loss = fused
    logs = [model.train_on_batch(*batch, return_dict=True) for _ in range(2)]
    assert bool(traced) == fused  # traced once into the compiled step, or not at all
    # Attention key biases have a zero gradient (they shift every score of a query alike), so
    # theirs is float32 noise, which Adam scales up to a full step: left out of the comparison.
    weights = [w.numpy() for w in model.weights if not w.path.endswith("key/bias")]
    return logs, weights, float(model.optimizer.gradient_norm.numpy())


@pytest.mark.parametrize("share_embeddings", [False, True])
def test_fused_training_step_matches_keras_step(share_embeddings, no_op_determinism, monkeypatch):
    rng = np.random.default_rng(1)
    source = rng.integers(1, 20, size=(4, 9))
    target = rng.integers(1, 20, size=(4, 8))
    target[1, 5:] = 0
    target[3, 2:] = 0
    batch = ({"source": source, "target_in": target[:, :-1]}, target[:, 1:])
    fused_logs, fused_weights, fused_norm = _step_results(
        True, share_embeddings, batch, monkeypatch
    )
    keras_logs, keras_weights, keras_norm = _step_results(
        False, share_embeddings, batch, monkeypatch
    )
    for got, want in zip(fused_logs, keras_logs, strict=True):
        assert (
            set(got)
            == set(want)
            == {
                "loss",
                "masked_accuracy",
                "perplexity",
                "target_tokens",
            }
        )
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
    # train_on_batch starts its metrics afresh: the batch's 28 positions less 3 + 6 padding.
    assert fused_logs[1]["target_tokens"] == 4 * 7 - 3 - 6
    np.testing.assert_allclose(fused_norm, keras_norm, rtol=1e-5)
    assert len(fused_weights) == len(keras_weights) > 20
    for got, want in zip(fused_weights, keras_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
