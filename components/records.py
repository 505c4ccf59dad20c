"""TFRecord helpers shared by the data stages: Example encoding and deterministic shards.

Beam's own file sinks assign elements to shards in no fixed order. Here each element carries a
sort key, the shard is a hash of that key, and each shard is written sorted (an external sort,
components/sorted_runs.py), so the same input always gives byte-identical files (and so identical
training order downstream) in memory that does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import apache_beam as beam
import tensorflow as tf

from components.sorted_runs import SortedRuns, merge_runs

SPLITS = ("train", "validation", "test")
RUNS_DIR = "_runs"  # spilled sorted runs, under a stage's output until its pipeline ends


def bytes_feature(value: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))


def int_feature(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def text_example(source: str, target: str) -> bytes:
    """A serialized tf.train.Example with string features `source` and `target`."""
    features = {"source": bytes_feature(source), "target": bytes_feature(target)}
    return serialize_example(tf.train.Example(features=tf.train.Features(feature=features)))


def serialize_example(example: tf.train.Example) -> bytes:
    """The Example's bytes, its feature map in key order.

    Protobuf writes a map in hash-table order, which differs between processes (and so
    between Beam workers): only deterministic serialization gives the same bytes every run.
    """
    return example.SerializeToString(deterministic=True)


def parse_text_example(record: bytes) -> tuple[str, str]:
    """The (source, target) strings of a record written by `text_example`."""
    feature = tf.train.Example.FromString(record).features.feature
    return (
        feature["source"].bytes_list.value[0].decode("utf-8"),
        feature["target"].bytes_list.value[0].decode("utf-8"),
    )


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's `hash` is salted)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def shard_paths(directory: Path, name: str) -> list[Path]:
    """The shard files of one dataset, in a fixed order."""
    return sorted(Path(directory).glob(f"{name}-*.tfrecord"))


def spilled_runs_dir(prefix: str) -> str:
    """Where the sorted runs of the dataset `prefix` are spilled (see `remove_spilled_runs`)."""
    parent, name = os.path.split(prefix)
    return os.path.join(parent, RUNS_DIR, name)


def remove_spilled_runs(directory: Path) -> None:
    """Deletes the run files a finished pipeline spilled under `directory`."""
    shutil.rmtree(Path(directory) / RUNS_DIR, ignore_errors=True)


def _write_shard(shard_runs: tuple[str, list[str]], prefix: str, num_shards: int) -> int:
    shard, run_paths = shard_runs
    path = f"{prefix}-{shard}-of-{num_shards:05d}.tfrecord"
    written = 0
    with tf.io.TFRecordWriter(path) as writer:
        for _, record in merge_runs(run_paths):
            writer.write(record)
            written += 1
    return written


class WriteSortedShards(beam.PTransform):
    """Writes (sort_key, record) pairs to `prefix-SSSSS-of-NNNNN.tfrecord`, each shard sorted.

    Streams: records are sorted in bounded-memory runs spilled next to the output (under
    `RUNS_DIR`, which the caller removes with `remove_spilled_runs` after the pipeline) and
    merged into each shard. Outputs the number of records written per shard.
    """

    def __init__(self, prefix: str, num_shards: int):
        super().__init__()
        self.prefix = prefix
        self.num_shards = num_shards

    def expand(self, keyed_records):
        n = self.num_shards
        return (
            keyed_records
            | "AssignShard" >> beam.Map(lambda kv: (f"{stable_hash(kv[0]) % n:05d}", kv))
            | "SortRuns" >> SortedRuns(spilled_runs_dir(self.prefix))
            | "WriteShard" >> beam.Map(_write_shard, prefix=self.prefix, num_shards=n)
        )
