"""tf.data batching: token budgets, shifted targets and fixed shapes for XLA."""

import numpy as np
import tensorflow as tf

from components.input_pipeline import bucket_boundaries, make_batches, pack_rows
from pipeline.config import TrainConfig


def _pairs(lengths):
    def gen():
        for n in lengths:
            yield np.arange(2, 2 + n, dtype="int64"), np.arange(5, 5 + n, dtype="int64")

    spec = (tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64))
    return tf.data.Dataset.from_generator(gen, output_signature=spec)


def test_bucket_boundaries():
    assert bucket_boundaries(20) == [8, 12, 16, 20, 21]
    assert bucket_boundaries(64)[-2:] == [64, 65]


def test_batches_respect_the_token_budget_and_shift_targets():
    lengths = [3, 5, 7, 9, 11, 13] * 20
    cfg = TrainConfig(max_length=20, batch_tokens=64)
    batches = list(make_batches(_pairs(lengths), cfg, shuffle_seed=None).as_numpy_iterator())
    assert sum(len(y) for _, y in batches) == len(lengths)
    for x, y in batches:
        # Bucket bound b holds sequences shorter than b; 64 // b of them fit the budget.
        assert x["source"].shape[0] * x["source"].shape[1] <= 64
        np.testing.assert_array_equal(x["target_in"][:, 1:], y[:, :-1])


def test_pad_to_buckets_gives_fixed_shapes():
    lengths = [3, 5, 7, 9, 11, 13] * 20
    cfg = TrainConfig(max_length=20, batch_tokens=64, pad_to_buckets=True)
    batches = list(make_batches(_pairs(lengths), cfg, shuffle_seed=1).as_numpy_iterator())
    shapes = {x["source"].shape for x, _ in batches}
    # One shape per bucket: (64 // bound, bound - 1); the last partial batch is dropped.
    assert shapes <= {(8, 7), (5, 11), (4, 15), (3, 19), (3, 20)}
    assert len(shapes) <= 4


def test_pad_to_buckets_keeps_every_unshuffled_pair():
    lengths = [3, 5, 7, 9, 11, 13] * 20
    cfg = TrainConfig(max_length=20, batch_tokens=64, pad_to_buckets=True)
    batches = list(make_batches(_pairs(lengths), cfg, shuffle_seed=None).as_numpy_iterator())
    # Validation keeps each bucket's last partial batch: all 120 pairs, bucket-bound lengths.
    assert sum(len(y) for _, y in batches) == len(lengths)
    assert {x["source"].shape[1] for x, _ in batches} == {7, 11, 15}
    for x, _ in batches:
        assert x["source"].shape[0] <= 64 // (x["source"].shape[1] + 1)
    real = sorted(
        int(np.count_nonzero(x["source"][i])) for x, _ in batches for i in range(len(x["source"]))
    )
    assert real == sorted(lengths)


def test_batches_run_without_tf_data_autotuning():
    # Autotuning's optimization thread made dropping an iterator wait up to 60 s.
    cfg = TrainConfig(max_length=20, batch_tokens=64)
    for seed in (None, 3):
        assert (
            make_batches(_pairs([3, 5]), cfg, shuffle_seed=seed).options().autotune.enabled is False
        )


def _numbered_pairs(lengths):
    """Pair i: source [100 + i, 1000 + i, ...] (n tokens), target [2, 100 + i, ..., 3] (n + 1)."""

    def gen():
        for i, n in enumerate(lengths):
            source = np.array([100 + i] + [1000 + i] * (n - 1), dtype="int64")
            target = np.array([2, 100 + i] + [2000 + i] * (n - 2) + [3], dtype="int64")
            yield source, target

    spec = (tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64))
    return tf.data.Dataset.from_generator(gen, output_signature=spec)


def test_pack_rows_first_fit_decreasing():
    lengths = np.array([[5, 5], [3, 4], [8, 2], [2, 2], [12, 3]])
    # Longest first; pair 4 is over capacity and gets a row alone; 3 joins 2, 1 joins 0.
    assert pack_rows(lengths, 10) == [[4], [2, 3], [0, 1]]


def test_pack_rows_fills_wide_rows_with_shorter_pairs():
    lengths = np.array([[5, 5], [3, 4], [8, 2], [2, 2], [12, 3]])
    # Pair 4 opens a wide row (16 a side): 2 (20) and 0 (17) overflow it, 1 fits (15, 7);
    # then 3 no longer fits the wide row (17) and joins 2's row of 10.
    assert pack_rows(lengths, 10, 16) == [[4, 1], [2, 3], [0]]
    # A wide row's limit holds on each side: a target of 5 more would make 17.
    assert pack_rows(np.array([[12, 12], [1, 5]]), 10, 16) == [[0], [1]]


def test_pack_rows_with_a_shorter_target_side():
    lengths = np.array([[8, 7], [6, 2], [2, 3], [4, 9]])
    # Rows of (10, 8): pair 3's target of 9 opens a wide row (16 a side), which 0 joins
    # (12, 16); 1 opens a row, 2 joins it (8, 5).
    assert pack_rows(lengths, (10, 8), 16) == [[3, 0], [1, 2]]
    # Rows of 10 a side: nothing is wide; 0 and 3 do not share (12 sources).
    assert pack_rows(lengths, 10, 16) == [[3], [0, 2], [1]]
    # Without a width, a wide row holds the larger capacity (10): 0's target overflows it.
    assert pack_rows(lengths, (10, 8)) == [[3], [0], [1, 2]]


def test_packed_batches_with_a_shorter_target_row():
    lengths = [3, 4, 5, 6, 7, 9, 11, 13] * 6 + [15, 19]
    cfg = TrainConfig(max_length=20, batch_tokens=64, pack_length=16, pack_target_length=12)
    batches = list(make_batches(_numbered_pairs(lengths), cfg, shuffle_seed=1).as_numpy_iterator())
    # Rows of 16 source and 12 target tokens, 4 per batch; pairs over either in rows of 20.
    shapes = {(x["source"].shape, x["source_segments"].shape, y.shape) for x, y in batches}
    assert shapes == {((4, 16), (4, 16), (4, 12)), ((3, 20), (3, 20), (3, 20))}
    seen = []
    for x, y in batches:
        assert x["target_in"].shape == x["target_segments"].shape == y.shape
        assert x["target_positions"].shape == y.shape
        assert x["source_positions"].shape == x["source"].shape
        for r in range(len(y)):
            for segment in range(1, x["source_segments"][r].max() + 1):
                i = int(x["source"][r][x["source_segments"][r] == segment][0]) - 100
                target_out = y[r][x["target_segments"][r] == segment]
                assert target_out[0] == 100 + i and len(target_out) == lengths[i]
                seen.append(i)
    assert sorted(seen) == list(range(len(lengths)))
    # Pairs of 13 fit a row's 16 source tokens but not its 12 target tokens: rows of 20.
    in_wide_rows = {
        int(v) - 100
        for x, _ in batches
        if x["source"].shape[1] == 20
        for v in x["source"][x["source_segments"] > 0]
        if v < 1000
    }
    assert {i for i, n in enumerate(lengths) if n > 12} <= in_wide_rows
    assert any(lengths[i] <= 12 for i in in_wide_rows)  # shorter pairs fill them up


def test_packed_batches_hold_every_pair_once_with_fixed_shapes():
    lengths = [3, 4, 5, 6, 7, 9, 11, 13, 17] * 6 + [19, 20]
    cfg = TrainConfig(max_length=20, batch_tokens=64, pack_length=16)
    batches = list(make_batches(_numbered_pairs(lengths), cfg, shuffle_seed=1).as_numpy_iterator())
    # Rows of 16 tokens, 4 per batch; pairs over 16 tokens in rows of 20, 3 per batch.
    assert {x["source"].shape for x, _ in batches} == {(4, 16), (3, 20)}
    seen = []
    for x, y in batches:
        assert x["source"].shape == y.shape == x["target_in"].shape
        for r in range(len(y)):
            for segment in range(1, x["source_segments"][r].max() + 1):
                source = x["source"][r][x["source_segments"][r] == segment]
                in_pair = x["target_segments"][r] == segment
                target_in, target_out = x["target_in"][r][in_pair], y[r][in_pair]
                i = int(source[0]) - 100
                assert len(source) == lengths[i] and len(target_in) == lengths[i]
                np.testing.assert_array_equal(target_in[1:], target_out[:-1])
                assert target_in[0] == 2 and target_out[-1] == 3 and target_out[0] == 100 + i
                np.testing.assert_array_equal(
                    x["source_positions"][r][x["source_segments"][r] == segment],
                    np.arange(lengths[i]),
                )
                np.testing.assert_array_equal(
                    x["target_positions"][r][in_pair], np.arange(lengths[i])
                )
                seen.append(i)
            # Padding: id 0, segment 0, on both sides.
            assert not x["source"][r][x["source_segments"][r] == 0].any()
            assert not y[r][x["target_segments"][r] == 0].any()
    assert sorted(seen) == list(range(len(lengths)))
    # Shorter pairs share the wide rows: pairs of 17 leave room for one of 3.
    wide = [x["source_segments"] for x, _ in batches if x["source"].shape[1] == 20]
    assert max(int(segments.max()) for segments in wide) == 2
    again = list(make_batches(_numbered_pairs(lengths), cfg, shuffle_seed=1).as_numpy_iterator())
    assert len(again) == len(batches)
    for (x1, y1), (x2, y2) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(y1, y2)
        for key in x1:
            np.testing.assert_array_equal(x1[key], x2[key])


def test_validation_batches_are_not_packed_but_bucket_padded():
    cfg = TrainConfig(max_length=20, batch_tokens=64, pack_length=16)
    lengths = [3, 5, 7, 9, 11, 13] * 20
    batches = list(make_batches(_numbered_pairs(lengths), cfg, shuffle_seed=None))
    assert all(sorted(x) == ["source", "target_in"] for x, _ in batches)
    # Few shapes for XLA (bucket bounds), and every pair kept.
    assert {int(x["source"].shape[1]) for x, _ in batches} == {7, 11, 15}
    assert sum(int(y.shape[0]) for _, y in batches) == len(lengths)
