"""The ingest stage's statistics: Beam combiners over its rows, gathered into statistics.json.

Every statistic is a combiner (or a count) whose accumulator does not grow with the corpus; the
pipeline writes them as `[kind, key, value]` JSON lines and `collect_statistics` folds those into
one dict after the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam

from components.records import SPLITS
from components.stats import (
    CharacterCounts,
    Histogram,
    summarize_characters,
    summarize_histogram,
    summarize_ratio,
)

# Kinds whose values add up when several pipeline branches report the same key.
_ADDITIVE = ("count", "rejected", "files")


def count_per(rows, label: str, key_of, kind: str, *suffix: str):
    """`[kind, [key, *suffix], n]` for each key `key_of(row)` takes, n = rows with that key."""
    return (
        rows
        | f"{label}Keys" >> beam.Map(key_of)
        | f"{label}Count" >> beam.combiners.Count.PerElement()
        | f"{label}Label" >> beam.MapTuple(lambda key, n: (kind, [key, *suffix], n))
    )


def _row_measures(kv):
    split, (source, target) = kv
    source_words, target_words = len(source.split()), len(target.split())
    yield ("words", split, "source"), source_words
    yield ("words", split, "target"), target_words
    yield ("ratio", split, ""), round(10 * target_words / source_words)


def row_stats(split_rows) -> beam.PCollection:
    """Length histograms per split and side, length-ratio histograms, character counts.

    `split_rows` holds (split, (source, target)) per kept row.
    """
    lengths = (
        split_rows
        | "Measures" >> beam.FlatMap(_row_measures)
        | "Histogram" >> beam.CombinePerKey(Histogram())
        | "FormatLengths" >> beam.MapTuple(lambda key, hist: (key[0], list(key[1:]), hist))
    )
    characters = (
        split_rows
        | "Texts"
        >> beam.FlatMap(lambda kv: [((kv[0], "source"), kv[1][0]), ((kv[0], "target"), kv[1][1])])
        | "Characters" >> beam.CombinePerKey(CharacterCounts())
        | "FormatCharacters" >> beam.MapTuple(lambda key, counts: ("chars", list(key), counts))
    )
    return (lengths, characters) | "RowStats" >> beam.Flatten()


def write_stats(stats: list, out: Path) -> None:
    """Writes the `[kind, key, value]` PCollections to `_stats*.jsonl` under `out`."""
    _ = (
        stats
        | "AllStats" >> beam.Flatten()
        | "StatsJson" >> beam.Map(json.dumps)
        | "WriteStats"
        >> beam.io.WriteToText(str(out / "_stats"), file_name_suffix=".jsonl", num_shards=1)
    )


def _add_line(stats: dict, kind: str, key: list, value) -> None:
    if kind == "words":
        stats["words"].setdefault(key[0], {})[key[1]] = summarize_histogram(value)
    elif kind == "ratio":
        stats["length_ratio"][key[0]] = summarize_ratio(value)
    elif kind == "chars":
        stats["characters"].setdefault(key[0], {})[key[1]] = summarize_characters(value)
    elif kind == "files":
        counts = stats["files"].setdefault(key[0], {"read": 0, "kept": 0, "rejected": 0})
        counts[key[1]] += value
    else:
        stats[kind][key[0]] = stats[kind].get(key[0], 0) + value


def collect_statistics(out: Path) -> dict:
    """Folds the pipeline's `_stats*.jsonl` into the statistics dict (and deletes the files).

    Raises RuntimeError if an input file's rows read differ from its rows kept plus rejected.
    """
    stats: dict = {
        "count": {s: 0 for s in SPLITS},
        "rejected": {},
        "files": {},
        "words": {},
        "length_ratio": {},
        "characters": {},
    }
    for path in sorted(out.glob("_stats*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            _add_line(stats, *json.loads(line))
        path.unlink()
    stats["files"] = dict(sorted(stats["files"].items()))
    for name, counts in stats["files"].items():
        if counts["read"] != counts["kept"] + counts["rejected"]:
            raise RuntimeError(f"ingest lost rows of {name}: {counts}")
    stats["kept"] = sum(stats["count"].values())
    stats["rejected_total"] = sum(stats["rejected"].values())
    stats["read"] = sum(counts["read"] for counts in stats["files"].values())
    if stats["read"] != stats["kept"] + stats["rejected_total"]:
        raise RuntimeError(f"ingest read {stats['read']} rows but kept + rejected differ")
    return stats
