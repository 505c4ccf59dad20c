"""tf.data batching: token budgets, shifted targets and fixed shapes for XLA."""

import numpy as np
import tensorflow as tf

from components.input_pipeline import bucket_boundaries, make_batches
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
