"""tf.data input for training: token-id TFRecords, length buckets and token-budget batches."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from components.records import shard_paths
from pipeline.config import TrainConfig

_FEATURES = {
    "source_ids": tf.io.RaggedFeature(tf.int64),
    "target_ids": tf.io.RaggedFeature(tf.int64),
}


def load_token_pairs(directory: Path, split: str, max_length: int) -> tf.data.Dataset:
    """(source_ids, target_ids) of a split, in file order; pairs over `max_length` skipped."""
    files = [str(p) for p in shard_paths(directory, split)]
    if not files:
        raise FileNotFoundError(f"no {split} token files in {directory}")
    dataset = tf.data.TFRecordDataset(files)
    dataset = dataset.map(
        lambda record: tf.io.parse_single_example(record, _FEATURES),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.map(lambda ex: (ex["source_ids"], ex["target_ids"]))
    return dataset.filter(
        lambda s, t: tf.logical_and(tf.size(s) <= max_length, tf.size(t) <= max_length)
    )


def bucket_boundaries(max_length: int) -> list[int]:
    """Upper length bounds (exclusive) of the buckets: fine steps for short sentences."""
    bounds = [b for b in (8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256) if b <= max_length]
    return bounds + [max_length + 1]


def make_batches(
    pairs: tf.data.Dataset, cfg: TrainConfig, shuffle_seed: int | None
) -> tf.data.Dataset:
    """Shuffled (when seeded), length-bucketed batches of about `cfg.batch_tokens` tokens.

    Yields ({"source": (B, S), "target_in": (B, T)}, target_out (B, T)): target_in drops the
    last token and target_out the first, so position t predicts token t+1.
    """
    if shuffle_seed is not None:
        pairs = pairs.shuffle(cfg.shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    bounds = bucket_boundaries(cfg.max_length)
    batch_sizes = [max(1, cfg.batch_tokens // b) for b in bounds]
    # Padding to the bucket bound leaves one sequence length per bucket, so XLA compiles a
    # handful of programs instead of one per batch. Training batches also drop each bucket's
    # last partial batch (one shape per bucket); unshuffled (validation) batches keep it (two
    # shapes per bucket at most), so every sentence is scored.
    batches = pairs.bucket_by_sequence_length(
        element_length_func=lambda s, t: tf.maximum(tf.size(s), tf.size(t)),
        bucket_boundaries=bounds[:-1],
        bucket_batch_sizes=batch_sizes,
        pad_to_bucket_boundary=cfg.pad_to_buckets,
        drop_remainder=cfg.pad_to_buckets and shuffle_seed is not None,
    )

    def to_model_inputs(source, target):
        return {"source": source, "target_in": target[:, :-1]}, target[:, 1:]

    batches = batches.map(to_model_inputs).prefetch(2)
    # No tf.data autotuning: its optimization thread sleeps up to 60 s between rounds, and an
    # iterator's destructor waits for it. Keras drops each epoch's iterator, so at some epoch
    # ends training stood still for 50-65 s (seen in Multi30k runs: the main thread blocked in
    # ~RootDataset::Iterator). Without it an epoch of Multi30k batches still takes about 2 s
    # to produce, against about 80 s to train on.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.with_options(options)
