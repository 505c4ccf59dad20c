"""tf.data input for training: token-id TFRecords, length buckets and token-budget batches,
or packed rows of several sentence pairs each (`train.pack_length`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    last token and target_out the first, so position t predicts token t+1. Seeded (training)
    batches with `cfg.pack_length` hold packed rows instead, with segment and position ids
    beside the tokens (`_packed_batches`).
    """
    if shuffle_seed is not None:
        pairs = pairs.shuffle(cfg.shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        if cfg.pack_length:
            return _without_autotune(_packed_batches(pairs, cfg))
    bounds = bucket_boundaries(cfg.max_length)
    batch_sizes = [max(1, cfg.batch_tokens // b) for b in bounds]
    # Packing gives training batches fixed shapes; validation (not packed) gets bucket shapes.
    fixed_shapes = cfg.pad_to_buckets or bool(cfg.pack_length)
    # Padding to the bucket bound leaves one sequence length per bucket, so XLA compiles a
    # handful of programs instead of one per batch. Training batches also drop each bucket's
    # last partial batch (one shape per bucket); unshuffled (validation) batches keep it (two
    # shapes per bucket at most), so every sentence is scored.
    batches = pairs.bucket_by_sequence_length(
        element_length_func=lambda s, t: tf.maximum(tf.size(s), tf.size(t)),
        bucket_boundaries=bounds[:-1],
        bucket_batch_sizes=batch_sizes,
        pad_to_bucket_boundary=fixed_shapes,
        drop_remainder=fixed_shapes and shuffle_seed is not None,
    )

    def to_model_inputs(source, target):
        return {"source": source, "target_in": target[:, :-1]}, target[:, 1:]

    return _without_autotune(batches.map(to_model_inputs))


def _without_autotune(batches: tf.data.Dataset) -> tf.data.Dataset:
    batches = batches.prefetch(2)
    # No tf.data autotuning: its optimization thread sleeps up to 60 s between rounds, and an
    # iterator's destructor waits for it. Keras drops each epoch's iterator, so at some epoch
    # ends training stood still for 50-65 s (seen in Multi30k runs: the main thread blocked in
    # ~RootDataset::Iterator). Without it an epoch of Multi30k batches still takes about 2 s
    # to produce, against about 80 s to train on.
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.with_options(options)


# Pairs are packed a window at a time, which bounds the memory. First-fit decreasing over a few
# thousand pairs fills rows well: on Multi30k, rows of 32 leave 5% of source and 10% of target
# positions as padding (English, the source, is the longer side, so its rows fill first).
PACK_WINDOW = 4096
_PACKED_KEYS = (
    "source",
    "target_in",
    "source_segments",
    "target_segments",
    "source_positions",
    "target_positions",
)


def _capacities(capacity) -> np.ndarray:
    """(source, target) tokens of a packed row: one number for both sides, or a pair."""
    return np.broadcast_to(np.asarray(capacity, dtype=np.int64), (2,))


def is_wide(lengths: np.ndarray, capacity) -> bool:
    """Whether a pair of (source, target) `lengths` needs a wide row of `width` tokens a side:
    it is longer than a row's capacity on either side."""
    return bool(np.any(np.asarray(lengths) > _capacities(capacity)))


def pack_rows(lengths: np.ndarray, capacity, width: int | None = None) -> list[list[int]]:
    """First-fit decreasing: rows of pair indices whose lengths (source, target) sum to at
    most `capacity` on each side (one number for both, or a (source, target) pair). A pair
    longer than that opens a wide row, which holds up to `width` tokens a side (default: the
    larger capacity, so nothing joins it); shorter pairs fill a wide row's free space like any
    other row's, so few of its positions stay padding."""
    caps = _capacities(capacity)
    width = int(caps.max()) if width is None else max(int(width), int(caps.max()))
    rows: list[list[int]] = []
    used = np.zeros((len(lengths), 2), dtype=np.int64)  # per row; at most one row per pair
    limits = np.zeros((len(lengths), 2), dtype=np.int64)
    for i in np.argsort(-lengths.max(axis=1), kind="stable"):
        # Longest first, so wide rows open first and short pairs try them first.
        n = len(rows)
        fits = np.flatnonzero(np.all(used[:n] + lengths[i] <= limits[:n], axis=1))
        if len(fits):
            rows[fits[0]].append(int(i))
            used[fits[0]] += lengths[i]
        else:
            used[n] = lengths[i]
            limits[n] = (width, width) if is_wide(lengths[i], caps) else caps
            rows.append([int(i)])
    return rows


def pack_window(source_values, source_lengths, target_values, target_lengths, capacity, width):
    """One window of pairs -> packed rows, each padded to `width`, and whether each is wide.

    `capacity` is the (source, target) tokens of a row. Target rows hold each pair's target
    without its last token (target_in) and without its first (target_out); segments number the
    pairs of a row from 1 (0: padding); positions restart at 0 in each pair.
    """
    sources = np.split(source_values, np.cumsum(source_lengths)[:-1])
    targets = np.split(target_values, np.cumsum(target_lengths)[:-1])
    lengths = np.stack([source_lengths, target_lengths - 1], axis=1).astype(np.int64)
    rows = pack_rows(lengths, capacity, int(width))
    out = {key: np.zeros((len(rows), width), np.int64) for key in (*_PACKED_KEYS, "target_out")}
    wide = np.zeros(len(rows), np.int32)
    for r, members in enumerate(rows):
        wide[r] = any(is_wide(lengths[i], capacity) for i in members)
        s = t = 0
        for segment, i in enumerate(members, start=1):
            source, target = sources[i], targets[i]
            n, m = len(source), len(target) - 1
            out["source"][r, s : s + n] = source
            out["source_segments"][r, s : s + n] = segment
            out["source_positions"][r, s : s + n] = np.arange(n)
            out["target_in"][r, t : t + m] = target[:-1]
            out["target_out"][r, t : t + m] = target[1:]
            out["target_segments"][r, t : t + m] = segment
            out["target_positions"][r, t : t + m] = np.arange(m)
            s, t = s + n, t + m
    return (*(out[key] for key in (*_PACKED_KEYS, "target_out")), wide)


def _packed_batches(pairs: tf.data.Dataset, cfg: TrainConfig) -> tf.data.Dataset:
    """Rows of `cfg.pack_length` source and `cfg.pack_target_length` (default: the same)
    target tokens holding several pairs; `batch_tokens // pack_length` rows per batch. Pairs
    longer than a row get rows of `max_length` tokens a side, batched apart, which shorter
    pairs fill up.
    Each group's last batch is filled up with empty rows, so every batch of a group has one
    shape (one XLA program) and no pair is dropped."""
    capacity = (cfg.pack_length, cfg.pack_target_length or cfg.pack_length)
    width = cfg.max_length
    rows_per_batch = {
        0: max(1, cfg.batch_tokens // capacity[0]),
        1: max(1, cfg.batch_tokens // width),
    }
    # Columns kept per key: the source side's keys, then the target side's (and target_out).
    sides = [0 if key.startswith("source") else 1 for key in _PACKED_KEYS] + [1]

    def pack(batch_source, batch_target):
        outputs = tf.numpy_function(
            pack_window,
            [
                batch_source.flat_values,
                batch_source.row_lengths(),
                batch_target.flat_values,
                batch_target.row_lengths(),
                np.asarray(capacity, np.int64),
                width,
            ],
            [tf.int64] * (len(_PACKED_KEYS) + 1) + [tf.int32],
            stateful=False,
        )
        for tensor in outputs[:-1]:
            tensor.set_shape([None, width])
        outputs[-1].set_shape([None])
        return tf.data.Dataset.from_tensor_slices(tuple(outputs))

    def group(key):
        return tf.where(
            key == 0,
            tf.constant(rows_per_batch[0], tf.int64),
            tf.constant(rows_per_batch[1], tf.int64),
        )

    def batch_group(key, rows):
        size = group(key)
        columns = [
            tf.where(key == 0, tf.constant(capacity[side], tf.int64), tf.constant(width, tf.int64))
            for side in (0, 1)
        ]

        def fill(*batch):
            missing = size - tf.shape(batch[0], out_type=tf.int64)[0]
            return tuple(
                tf.pad(t[:, : columns[side]], [[0, missing], [0, 0]])
                for t, side in zip(batch[:-1], sides, strict=True)
            )

        return rows.batch(size).map(fill)

    rows = pairs.ragged_batch(PACK_WINDOW).flat_map(pack)
    batches = rows.group_by_window(
        key_func=lambda *row: tf.cast(row[-1], tf.int64),
        reduce_func=batch_group,
        window_size_func=group,
    )

    def to_model_inputs(*batch):
        return dict(zip(_PACKED_KEYS, batch[:-1], strict=True)), batch[-1]

    return batches.map(to_model_inputs)
