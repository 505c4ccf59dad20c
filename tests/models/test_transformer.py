"""The Keras Transformer: masks, causality, config round trip and save/load parity."""

import keras
import numpy as np
import pytest
from keras import ops

from components.input_pipeline import pack_window
from models.losses import (
    MaskedAccuracy,
    MaskedCrossEntropy,
    MaskedPerplexity,
    TargetTokens,
)
from models.positional_embedding import sinusoidal_table
from models.schedules import InverseSqrtSchedule
from models.transformer import Transformer, causal_mask, padding_mask, segment_mask


def _model(**kwargs):
    keras.utils.set_random_seed(1)
    args = dict(
        source_vocab_size=30,
        target_vocab_size=40,
        num_layers=2,
        d_model=16,
        num_heads=2,
        dff=32,
        dropout=0.0,
        max_length=16,
    )
    model = Transformer(**{**args, **kwargs})
    model.build()
    return model


SOURCE = np.array([[2, 5, 6, 7, 3, 0, 0], [2, 9, 3, 0, 0, 0, 0]])
TARGET = np.array([[2, 11, 12, 13, 0], [2, 14, 0, 0, 0]])


def test_masks_exact():
    assert ops.convert_to_numpy(padding_mask(np.array([[2, 5, 0]]))).tolist() == [
        [[True, True, False]]
    ]
    assert ops.convert_to_numpy(causal_mask(3)).tolist() == [
        [[True, False, False], [True, True, False], [True, True, True]]
    ]


def test_segment_mask_exact():
    segments = np.array([[1, 1, 2, 0]])
    assert ops.convert_to_numpy(segment_mask(segments, segments)).astype(int).tolist() == [
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    ]


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_packed_rows_give_each_pair_its_own_outputs(positional):
    """A row of several packed pairs gives, at each pair's target positions, the logits the
    pair gets alone: attention stays within the pair and positions restart with it."""
    rng = np.random.default_rng(0)
    pairs = [
        (rng.integers(4, 30, size=n), np.concatenate([[2], rng.integers(4, 40, size=m), [3]]))
        for n, m in [(5, 3), (2, 6), (7, 2), (3, 3), (6, 5), (4, 1)]
    ]
    *arrays, target_out, capacities = pack_window(
        np.concatenate([s for s, _ in pairs]),
        np.array([len(s) for s, _ in pairs]),
        np.concatenate([t for _, t in pairs]),
        np.array([len(t) for _, t in pairs]),
        12,
        16,
    )
    keys = ["source", "target_in", "source_segments", "target_segments"]
    packed = dict(zip(keys + ["source_positions", "target_positions"], arrays, strict=True))
    assert len(capacities) < len(pairs)  # some rows hold several pairs
    model = _model(positional=positional)
    logits = ops.convert_to_numpy(model(packed))
    checked = 0
    for r in range(len(capacities)):
        for segment in range(1, packed["source_segments"][r].max() + 1):
            source = packed["source"][r][packed["source_segments"][r] == segment]
            in_pair = packed["target_segments"][r] == segment
            alone = model(
                {"source": source[None], "target_in": packed["target_in"][r][in_pair][None]}
            )
            np.testing.assert_allclose(
                logits[r][in_pair], ops.convert_to_numpy(alone)[0], atol=1e-5
            )
            checked += 1
    assert checked == len(pairs)


def test_output_shape():
    logits = _model()({"source": SOURCE, "target_in": TARGET})
    assert tuple(logits.shape) == (2, 5, 40)


@pytest.mark.parametrize("norm_first", [True, False])
def test_source_padding_does_not_change_outputs(norm_first):
    model = _model(norm_first=norm_first)
    short = model({"source": SOURCE[:, :5], "target_in": TARGET})
    # Extra padding columns, and garbage under masked target positions' keys, change nothing.
    long = model({"source": np.pad(SOURCE, ((0, 0), (0, 4))), "target_in": TARGET})
    np.testing.assert_allclose(ops.convert_to_numpy(short), ops.convert_to_numpy(long), atol=1e-5)


def test_decoder_is_causal():
    model = _model()
    base = ops.convert_to_numpy(model({"source": SOURCE, "target_in": TARGET}))
    changed_future = TARGET.copy()
    changed_future[:, 3:] = 17
    other = ops.convert_to_numpy(model({"source": SOURCE, "target_in": changed_future}))
    np.testing.assert_allclose(base[:, :3], other[:, :3], atol=1e-5)
    assert not np.allclose(base[0, 3], other[0, 3])


def test_config_round_trip():
    model = _model(positional="learned")
    clone = Transformer.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_keras_file_round_trip_gives_identical_outputs(tmp_path, positional):
    model = _model(positional=positional)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    inputs = {"source": SOURCE, "target_in": TARGET}
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model(inputs)), ops.convert_to_numpy(loaded(inputs))
    )


def test_sinusoidal_table_values():
    table = sinusoidal_table(4, 4)
    np.testing.assert_allclose(table[0], [0, 1, 0, 1], atol=1e-7)
    np.testing.assert_allclose(
        table[1], [np.sin(1), np.cos(1), np.sin(0.01), np.cos(0.01)], rtol=1e-6
    )


def test_inverse_sqrt_schedule_values():
    schedule = InverseSqrtSchedule(d_model=64, warmup_steps=100)
    rate = lambda step: float(ops.convert_to_numpy(schedule(step)))  # noqa: E731
    # Optimizer step 0 is the paper's step 1.
    assert rate(0) == pytest.approx(64**-0.5 * 1 * 100**-1.5)
    assert rate(99) == pytest.approx(64**-0.5 * 100**-0.5)  # the peak, at the end of warmup
    assert rate(399) == pytest.approx(64**-0.5 * 400**-0.5)
    assert rate(49) < rate(99) > rate(399)


def test_masked_loss_and_accuracy_ignore_padding():
    y_true = np.array([[5, 6, 0]])
    logits = np.full((1, 3, 8), -10.0, dtype="float32")
    logits[0, 0, 5] = 10.0  # right
    logits[0, 1, 7] = 10.0  # wrong
    logits[0, 2, 1] = 10.0  # padding: whatever it says must not count
    metric = MaskedAccuracy()
    metric.update_state(y_true, logits)
    assert float(metric.result()) == pytest.approx(0.5)
    metric.update_state(np.array([[5, 0, 0]]), logits)  # one more right token, two padding
    # Weighted by tokens over batches: 2 right of 3 real tokens.
    assert float(metric.result()) == pytest.approx(2 / 3)
    # A true token tied for the largest logit counts as right (argmax would take id 1 here).
    tied = np.zeros((1, 1, 8), dtype="float32")
    tied[0, 0, [1, 4]] = 3.0
    metric.reset_state()
    metric.update_state(np.array([[4]]), tied)
    metric.update_state(np.array([[2]]), tied)
    assert float(metric.result()) == pytest.approx(1 / 2)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -(log_softmax[0, 0, 5] + log_softmax[0, 1, 6]) / 2
    assert float(MaskedCrossEntropy()(y_true, logits)) == pytest.approx(expected, rel=1e-5)


def test_label_smoothed_loss_matches_the_smoothed_distribution():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 11)).astype("float32") * 3
    y_true = np.array([[3, 9, 1, 0], [10, 0, 0, 0]])
    eps, vocab = 0.1, 11
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    smoothed = np.full(logits.shape, eps / vocab) + (1 - eps) * np.eye(vocab)[y_true]
    per_token = -(smoothed * log_softmax).sum(-1)
    expected = per_token[y_true != 0].mean()
    got = float(MaskedCrossEntropy(label_smoothing=eps)(y_true, logits))
    assert got == pytest.approx(expected, rel=1e-6)


def test_label_smoothed_loss_gradient_is_softmax_minus_smoothed_target():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    logits = tf.constant(rng.normal(size=(2, 4, 11)).astype("float32") * 3)
    y_true = np.array([[3, 9, 1, 0], [10, 0, 0, 4]])
    eps, vocab = 0.1, 11
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        loss = MaskedCrossEntropy(label_smoothing=eps)(y_true, logits)
        # The same loss through autodiff of Keras' own smoothed cross-entropy.
        smoothed = np.full(logits.shape, eps / vocab) + (1 - eps) * np.eye(vocab)[y_true]
        mask = (y_true != 0).astype("float32")
        reference = (
            tf.reduce_sum(
                keras.losses.categorical_crossentropy(smoothed, logits, from_logits=True) * mask
            )
            / mask.sum()
        )
    got = tape.gradient(loss, logits).numpy()
    softmax = np.exp(logits.numpy())
    softmax /= softmax.sum(-1, keepdims=True)
    expected = (softmax - smoothed) * mask[..., None] / mask.sum()
    np.testing.assert_allclose(got, expected, atol=1e-7)
    np.testing.assert_allclose(got, tape.gradient(reference, logits).numpy(), atol=1e-7)
    assert not got[y_true == 0].any()  # padding gets no gradient


def test_token_count_and_perplexity_metrics():
    y_true = np.array([[5, 6, 0]])
    logits = np.zeros((1, 3, 8), dtype="float32")  # uniform over 8 tokens
    perplexity = MaskedPerplexity()
    perplexity.update_state(y_true, logits)
    assert float(perplexity.result()) == pytest.approx(8.0, rel=1e-5)
    tokens = TargetTokens()
    tokens.update_state(y_true, logits)
    first = tokens.result()
    tokens.update_state(np.array([[1, 1, 1]]), logits)
    # A result already handed out (as Keras keeps it in the logs) does not move afterwards.
    assert float(first) == 2.0 and float(tokens.result()) == 5.0
