"""Sorted shards and records: the same bytes whatever the spill size or the process."""

import random

import apache_beam as beam
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from components import sorted_runs
from components.records import (
    RUNS_DIR,
    WriteSortedShards,
    parse_text_example,
    remove_spilled_runs,
    shard_paths,
    text_example,
)
from components.sorted_runs import SortedRuns, merge_runs, read_run, write_run
from tests.conftest import BEAM_ARGS

ENTRIES = [(f"key {random.Random(i).randrange(50)}", f"value {i}") for i in range(200)]


def _runs_per_group(entries, directory, spill_bytes) -> dict[str, list[str]]:
    collected = {}
    with TestPipeline(argv=BEAM_ARGS) as p:
        runs = (
            p
            | beam.Create([(f"group-{i % 2}", entry) for i, entry in enumerate(entries)])
            | SortedRuns(str(directory), spill_bytes)
        )
        _ = runs | beam.Map(lambda kv: (directory / f"{kv[0]}.paths").write_text("\n".join(kv[1])))
    for group in ("group-0", "group-1"):
        collected[group] = (directory / f"{group}.paths").read_text().splitlines()
    return collected


def test_spilled_runs_merge_into_the_sorted_input(tmp_path):
    # A spill after every entry: 100 one-entry runs per group.
    runs = _runs_per_group(ENTRIES, tmp_path, spill_bytes=1)
    assert [len(paths) for paths in runs.values()] == [100, 100]
    for parity, group in enumerate(("group-0", "group-1")):
        assert list(merge_runs(runs[group])) == sorted(ENTRIES[parity::2])


def test_one_run_per_group_when_the_buffer_holds_everything(tmp_path):
    runs = _runs_per_group(ENTRIES, tmp_path, spill_bytes=2**30)
    assert [len(paths) for paths in runs.values()] == [1, 1]
    assert list(read_run(runs["group-1"][0])) == sorted(ENTRIES[1::2])


def test_many_runs_merge_in_rounds(tmp_path, monkeypatch):
    monkeypatch.setattr(sorted_runs, "MAX_FAN_IN", 3)
    paths = []
    for i in range(10):
        path = str(tmp_path / f"run-{i}")
        write_run(path, sorted(ENTRIES[i::10]))
        paths.append(path)
    assert list(merge_runs(paths)) == sorted(ENTRIES)


def _write_shards(out, records) -> dict[str, bytes]:
    with TestPipeline(argv=BEAM_ARGS) as p:
        _ = p | beam.Create(records) | WriteSortedShards(str(out / "train"), 3)
    remove_spilled_runs(out)
    assert not (out / RUNS_DIR).exists()
    return {path.name: path.read_bytes() for path in shard_paths(out, "train")}


def test_shards_are_sorted_and_byte_identical_whatever_the_spill_size(tmp_path, monkeypatch):
    records = [(f"sentence {i}", f"record {i}".encode()) for i in range(300)]
    random.Random(0).shuffle(records)
    in_memory = _write_shards(tmp_path / "a", records)
    monkeypatch.setattr(sorted_runs, "SPILL_BYTES", 1)
    spilled = _write_shards(tmp_path / "b", records)
    assert spilled == in_memory and len(in_memory) == 3
    for name in in_memory:
        written = [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "b" / name))]
        keys = [r.decode().replace("record", "sentence") for r in written]
        assert keys == sorted(keys)
    assert (
        sum(len(list(tf.data.TFRecordDataset(str(p)))) for p in (tmp_path / "b").iterdir()) == 300
    )


def test_examples_serialize_their_features_in_key_order():
    # Protobuf writes maps in a hash order that differs between processes (Beam workers).
    for source, target in (("a", "b"), ("target", "source"), ("Über", "über")):
        record = text_example(source, target)
        assert record.index(b"\n\x06source") < record.index(b"\n\x06target")
        assert parse_text_example(record) == (source, target)
