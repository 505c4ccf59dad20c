"""Decoding: the in-graph loops against a Python reference and against each other."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from models.decoding import END_ID, START_ID, beam_search, cached_greedy_decode, greedy_decode
from models.transformer import Transformer

SOURCE = np.array([[2, 5, 6, 3], [2, 7, 3, 0], [2, 8, 9, 3]], dtype="int64")


def _model(norm_first=True, positional="sinusoidal"):
    keras.utils.set_random_seed(3)
    model = Transformer(
        20,
        20,
        num_layers=2,
        d_model=16,
        num_heads=2,
        dff=32,
        dropout=0.1,
        max_length=16,
        norm_first=norm_first,
        positional=positional,
    )
    model.build()
    return model


def _reference_greedy(model, source, max_length):
    tokens = [[START_ID] for _ in range(len(source))]
    done = [False] * len(source)
    while len(tokens[0]) < max_length and not all(done):
        logits = ops.convert_to_numpy(model({"source": source, "target_in": np.array(tokens)}))
        for i, row in enumerate(logits[:, -1, :]):
            row[[0, START_ID]] = -np.inf  # padding and start never appear inside an output
            token = 0 if done[i] else int(np.argmax(row))
            tokens[i].append(token)
            done[i] = done[i] or token == END_ID
    return tokens


def _trim(ids):
    return [list(np.trim_zeros(np.asarray(row), "b")) for row in ids]


def test_greedy_matches_python_loop():
    model = _model()
    ids, scores = greedy_decode(model, tf.constant(SOURCE), tf.constant(10))
    assert ids.numpy().tolist() == _reference_greedy(model, SOURCE, 10)
    assert scores.shape == (3,) and np.all(scores.numpy() < 0)


@pytest.mark.parametrize("norm_first, positional", [(True, "sinusoidal"), (False, "learned")])
def test_cached_greedy_equals_uncached(norm_first, positional):
    model = _model(norm_first, positional)
    uncached, uncached_scores = greedy_decode(model, tf.constant(SOURCE), tf.constant(12))
    cached, cached_scores = cached_greedy_decode(model, tf.constant(SOURCE), tf.constant(12))
    assert _trim(cached.numpy()) == _trim(uncached.numpy())
    np.testing.assert_allclose(cached_scores.numpy(), uncached_scores.numpy(), atol=1e-4)


def test_cached_step_logits_equal_full_decoder():
    model = _model()
    target = np.array([[2, 11, 12, 13], [2, 14, 15, 16], [2, 4, 5, 6]], dtype="int64")
    full = ops.convert_to_numpy(model({"source": SOURCE, "target_in": target}))
    cross, caches = model.start_decoding(tf.constant(SOURCE), 8)
    for index in range(target.shape[1]):
        logits, caches = model.decode_step(
            tf.constant(target[:, index]), index, caches, cross, tf.constant(SOURCE)
        )
        np.testing.assert_allclose(ops.convert_to_numpy(logits), full[:, index], atol=1e-4)


def test_beam_one_equals_greedy():
    model = _model()
    greedy, greedy_scores = cached_greedy_decode(model, tf.constant(SOURCE), tf.constant(12))
    beam, beam_scores = beam_search(model, tf.constant(SOURCE), tf.constant(12), beam_size=1)
    assert _trim(beam.numpy()) == _trim(greedy.numpy())
    np.testing.assert_allclose(beam_scores.numpy(), greedy_scores.numpy(), atol=1e-5)


def test_beam_finds_at_least_the_greedy_score_without_length_penalty():
    model = _model()
    _, greedy_scores = cached_greedy_decode(model, tf.constant(SOURCE), tf.constant(12))
    ids, beam_scores = beam_search(model, tf.constant(SOURCE), tf.constant(12), 4, alpha=0.0)
    # The greedy path is one of the hypotheses a width-4 beam keeps, so it can only do better.
    assert np.all(beam_scores.numpy() >= greedy_scores.numpy() - 1e-5)
    assert ids.shape[0] == 3 and np.all(ids.numpy()[:, 0] == START_ID)


def test_empty_batch_decodes_to_nothing():
    model = _model()
    empty = tf.zeros([0, 4], tf.int64)
    assert greedy_decode(model, empty, tf.constant(8))[0].shape[0] == 0
    assert cached_greedy_decode(model, empty, tf.constant(8))[0].shape[0] == 0
    assert beam_search(model, empty, tf.constant(8), 3)[0].shape[0] == 0


@pytest.mark.parametrize("decoder", ["uncached", "cached", "beam"])
def test_a_sentence_translates_the_same_alone_or_in_a_batch(decoder):
    model = _model()
    run = {
        "uncached": lambda s, m, lim: greedy_decode(model, s, m, lim),
        "cached": lambda s, m, lim: cached_greedy_decode(model, s, m, lim),
        "beam": lambda s, m, lim: beam_search(model, s, m, 3, 0.6, lim),
    }[decoder]
    limits = tf.constant([7, 5, 9])
    batch_ids, batch_scores = run(tf.constant(SOURCE), tf.constant(9), limits)
    for row in range(3):
        alone, alone_score = run(
            tf.constant(SOURCE[row : row + 1]), limits[row], limits[row : row + 1]
        )
        assert _trim(alone.numpy()) == _trim(batch_ids.numpy()[row : row + 1])
        assert len(_trim(alone.numpy())[0]) <= int(limits[row])
        np.testing.assert_allclose(
            alone_score.numpy(), batch_scores.numpy()[row : row + 1], atol=1e-4
        )


def test_cached_decoders_compile_with_xla_and_agree():
    model = _model()
    source = tf.constant(SOURCE)
    greedy = tf.function(lambda s: cached_greedy_decode(model, s, 10), jit_compile=True)
    beam = tf.function(lambda s: beam_search(model, s, 10, 3), jit_compile=True)
    eager_greedy, _ = cached_greedy_decode(model, source, tf.constant(10))
    eager_beam, _ = beam_search(model, source, tf.constant(10), 3)
    assert greedy(source)[0].numpy().tolist() == eager_greedy.numpy().tolist()
    assert beam(source)[0].numpy().tolist() == eager_beam.numpy().tolist()
