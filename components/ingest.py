"""Ingest stage (Apache Beam): read raw pairs, normalize, validate, de-duplicate, split, write.

Every row read ends up either in a split or in `rejected-*.jsonl` with a reason; rows read, kept
and rejected are counted per input file, so kept + rejected = read is checked, not assumed.

Streaming end to end: input files are cut into chunks that workers read in parallel, and rows
cross the one shuffle only inside sorted run files on disk (components/sorted_runs.py), so
memory does not grow with the corpus. Exact duplicate pairs meet when a shard's runs are merged.
The one table held in memory is the set of source sentences of the given validation and test
files, for the `source_in_other_split` rule.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from components import builtin_corpus
from components.chunks import file_chunks
from components.data_report import write_statistics_summaries
from components.ingest_stats import collect_statistics, count_per, row_stats, write_stats
from components.records import remove_spilled_runs, spilled_runs_dir, stable_hash, text_example
from components.remote import localize
from components.sorted_runs import SortedRuns, SpillSortedRuns, merge_runs
from components.sources import (
    InputFile,
    RawPair,
    input_files,
    read_aligned_files,  # noqa: F401  (re-exported: callers import it from here)
    read_input,
)
from components.validation import (  # noqa: F401  (normalize_text: re-exported)
    DUPLICATE,
    SOURCE_IN_OTHER_SPLIT,
    file_of,
    highest_split,
    normalize_text,
    origin_order,
    other_split_keeping,
    rejection,
    split_of,
    validate_pair,
)
from pipeline.artifacts import write_json
from pipeline.config import DataConfig

REJECTED = "rejected"
KEPT = "kept"
REJECTED_FILE = "rejected-00000-of-00001.jsonl"


@dataclasses.dataclass
class IngestResult:
    counts: dict[str, int]
    rejected: dict[str, int]


def _rules(cfg: DataConfig) -> tuple:
    return cfg.unicode_form, cfg.max_words, cfg.max_length_ratio, cfg.reject_identical


class ValidatePairs(beam.DoFn):
    """Normalizes pairs; emits ((split, source, target), origin), rejects to a tag.

    With the side input `given_sources` ({source: the highest given split it is in}), a row
    whose source a higher-ranked split keeps is rejected as `source_in_other_split`.
    """

    def __init__(self, cfg: DataConfig):
        self.rules = _rules(cfg)

    def process(self, pair: RawPair, given_sources: dict[str, str] | None = None):
        result = validate_pair(pair, *self.rules)
        if isinstance(result, str):
            yield beam.pvalue.TaggedOutput(REJECTED, rejection(pair, result))
            return
        keeper = other_split_keeping(pair.split, given_sources or {}, result[0])
        if keeper:
            detail = f"the source sentence is also in the given {keeper} file"
            yield beam.pvalue.TaggedOutput(REJECTED, rejection(pair, SOURCE_IN_OTHER_SPLIT, detail))
            return
        yield (pair.split, *result), pair.origin


class ReadPairs(beam.PTransform):
    """Reads the configured raw corpus (or only `files` of it) as RawPair elements."""

    def __init__(self, cfg: DataConfig, seed: int, files: list[InputFile] | None = None):
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        self.files = files

    def expand(self, pbegin):
        if self.cfg.format == "builtin":
            pairs = builtin_corpus.generate_pairs(self.cfg.builtin_pairs, self.seed)
            rows = [RawPair(s, t, f"builtin:{i + 1}") for i, (s, t) in enumerate(pairs)]
            return pbegin | "CreatePairs" >> beam.Create(rows, reshuffle=False)
        files = input_files(self.cfg) if self.files is None else self.files
        return (
            pbegin
            | "InputFiles" >> beam.Create(files)
            | "Chunks" >> beam.FlatMap(file_chunks, self.cfg.format)
            | "SpreadChunks" >> beam.Reshuffle()
            | "ReadChunks" >> beam.FlatMap(read_input, self.cfg)
        )


def _given_sources(pipeline, cfg: DataConfig):
    """{source: highest given split} over the valid rows of the given validation/test files."""
    given = [file for file in input_files(cfg) if file.split]
    if not (given and cfg.reject_source_in_other_split):
        return None

    def valid_source(pair: RawPair):
        result = validate_pair(pair, *_rules(cfg))
        if not isinstance(result, str):
            yield result[0], pair.split

    return (
        pipeline
        | "ReadGiven" >> ReadPairs(cfg, 0, given)
        | "GivenSources" >> beam.FlatMap(valid_source)
        | "HighestSplit" >> beam.CombinePerKey(highest_split)
    )


def _hash_fractions(cfg: DataConfig) -> tuple[float, float]:
    """Validation and test fractions for hashed rows: none for a split given by files."""
    given = {file.split for file in input_files(cfg)}
    validation = 0.0 if "validation" in given else cfg.split.validation
    return validation, 0.0 if "test" in given else cfg.split.test


def _shard_entry(row, num_shards: int, fractions: tuple[float, float]):
    """(split-shard group, sort entry): a pair's copies sort together, earliest origin first."""
    (given_split, source, target), origin = row
    split = given_split or split_of(source, *fractions)
    key = f"{source}\t{target}"
    return f"{split}-{stable_hash(key) % num_shards:05d}", (key, origin_order(origin), origin)


class WriteSplitShard(beam.DoFn):
    """Merges one split shard's sorted runs into its TFRecord file, dropping repeated pairs.

    Outputs (split, rows written); each kept row as (split, source, target, origin) to KEPT;
    each repeat of a pair (with `reject_duplicates`) as a rejection to REJECTED.
    """

    def __init__(self, out: str, num_shards: int, reject_duplicates: bool):
        self.out = out
        self.num_shards = num_shards
        self.reject_duplicates = reject_duplicates

    def process(self, group_and_runs: tuple[str, list[str]]):
        group, run_paths = group_and_runs
        split, shard = group.rsplit("-", 1)
        path = os.path.join(self.out, f"{split}-{shard}-of-{self.num_shards:05d}.tfrecord")
        written, previous = 0, None
        with tf.io.TFRecordWriter(path) as writer:
            for key, _, origin in merge_runs(run_paths):
                source, target = key.split("\t", 1)
                if self.reject_duplicates and key == previous:
                    duplicate = rejection(RawPair(source, target, origin), DUPLICATE)
                    yield beam.pvalue.TaggedOutput(REJECTED, duplicate)
                    continue
                previous = key
                writer.write(text_example(source, target))
                written += 1
                yield beam.pvalue.TaggedOutput(KEPT, (split, source, target, origin))
        yield split, written


def _rejected_entry(record: dict) -> tuple[str, tuple[str, str]]:
    line = json.dumps(record, ensure_ascii=False, sort_keys=True)
    return "rejected", (origin_order(record["origin"]), line)


def _write_lines(group_runs: tuple[str, list[str]], path: str) -> None:
    _, run_paths = group_runs
    with open(path, "w", encoding="utf-8") as stream:
        for _, line in merge_runs(run_paths):
            stream.write(line + "\n")


def _write_rejected(streams: dict[str, beam.PCollection], out: Path) -> None:
    """All rejected rows, sorted by origin, to one JSON-lines file (streaming, via runs)."""
    runs_dir = spilled_runs_dir(str(out / REJECTED))
    runs = [
        rejected
        | f"RejectedEntries{name}" >> beam.Map(_rejected_entry)
        | f"SpillRejected{name}" >> beam.ParDo(SpillSortedRuns(runs_dir))
        for name, rejected in streams.items()
    ]
    _ = (
        runs
        | "AllRejectedRuns" >> beam.Flatten()
        | "GroupRejectedRuns" >> beam.GroupByKey()
        | "WriteRejected" >> beam.Map(_write_lines, path=str(out / REJECTED_FILE))
    )


def _check_inputs(cfg: DataConfig) -> None:
    """Stops before the Beam pipeline starts: every configured path or glob must name files."""
    input_files(cfg)
    for key in ("source_column", "target_column") if cfg.format in ("tsv", "csv") else ():
        if getattr(cfg, key) < 0:
            raise ValueError(f"data.{key}: a column index counts from 0, got {getattr(cfg, key)}")
    if cfg.split.validation + cfg.split.test >= 1:
        raise ValueError("data.split: validation + test must leave room for train")


def build_ingest(pipeline, cfg: DataConfig, out: Path, seed: int) -> None:
    """Adds the ingest steps to a Beam pipeline, writing under `out`."""
    read = pipeline | "Read" >> ReadPairs(cfg, seed)
    given = _given_sources(pipeline, cfg)
    side = {} if given is None else {"given_sources": beam.pvalue.AsDict(given)}
    validated = read | "Validate" >> beam.ParDo(ValidatePairs(cfg), **side).with_outputs(
        REJECTED, main="kept"
    )
    written = (
        validated.kept
        | "ShardKey" >> beam.Map(_shard_entry, cfg.num_shards, _hash_fractions(cfg))
        | "SortRows" >> SortedRuns(spilled_runs_dir(str(out / "rows")))
        | "WriteShards"
        >> beam.ParDo(
            WriteSplitShard(str(out), cfg.num_shards, cfg.reject_duplicates)
        ).with_outputs(REJECTED, KEPT, main="counts")
    )
    rejected = {"Invalid": validated[REJECTED], "Duplicate": written[REJECTED]}
    _write_rejected(rejected, out)
    stats = [
        count_per(read, "FilesRead", lambda pair: file_of(pair.origin), "files", "read"),
        count_per(written[KEPT], "FilesKept", lambda row: file_of(row[3]), "files", "kept"),
        written.counts
        | "SumSplits" >> beam.CombinePerKey(sum)
        | "LabelSplits" >> beam.MapTuple(lambda split, n: ("count", [split], n)),
        row_stats(written[KEPT] | "SplitRows" >> beam.Map(lambda row: (row[0], row[1:3]))),
    ]
    for name, rows in rejected.items():
        stats.append(count_per(rows, f"Reasons{name}", lambda r: r["reason"], "rejected"))
        stats.append(
            count_per(
                rows, f"FilesRejected{name}", lambda r: file_of(r["origin"]), "files", "rejected"
            )
        )
    write_stats(stats, out)


def ingest(cfg: DataConfig, *, out: Path, seed: int, beam_args: list[str]) -> IngestResult:
    """Runs the ingest stage; writes split TFRecords, `statistics.json` and rejected rows."""
    cfg = localize(cfg)  # remote inputs: downloaded once, verified, then read from the cache
    _check_inputs(cfg)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build_ingest(pipeline, cfg, out, seed)
    remove_spilled_runs(out)
    (out / REJECTED_FILE).touch()  # present, if empty, when no row was rejected
    stats = collect_statistics(out)
    write_json(out / "statistics.json", stats)
    write_statistics_summaries(stats, out / "logs")
    _check_rows(stats, cfg, out)
    return IngestResult(counts=stats["count"], rejected=stats["rejected"])


class TooManyRejectedError(ValueError):
    """More rows were rejected than `data.max_rejected_fraction` allows."""


class EmptySplitError(ValueError):
    """Ingest kept no rows for a split: no input rows at all, or none left for that split."""


def _configured_inputs(cfg: DataConfig) -> str:
    """The config keys naming the input, with their values, for messages."""
    if cfg.format == "builtin":
        return f"the built-in corpus (data.builtin_pairs={cfg.builtin_pairs})"
    keys = [f.name for f in dataclasses.fields(cfg) if f.name.endswith("path")]
    return ", ".join(f"data.{key} {getattr(cfg, key)}" for key in keys if getattr(cfg, key))


def _first_rejections(out: Path, limit: int = 3) -> str:
    """The first rejected rows, "origin (reason)", for the message."""
    with open(out / REJECTED_FILE, encoding="utf-8") as stream:
        rows = [json.loads(line) for _, line in zip(range(limit), stream)]
    return ", ".join(f"{row['origin']} ({row['reason']})" for row in rows)


def _check_rows(stats: dict, cfg: DataConfig, out: Path) -> None:
    """Fails the stage when the input looks broken rather than merely dirty, or a split is empty.

    Tokenize, train and evaluate read every split, so an empty one would only fail later.
    """
    if stats["read"] == 0:
        raise EmptySplitError(f"no rows read from {_configured_inputs(cfg)}: the input is empty")
    fraction = stats["rejected_total"] / stats["read"]
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats["rejected"].items()))
    if fraction > cfg.max_rejected_fraction:
        raise TooManyRejectedError(
            f"{stats['rejected_total']} of {stats['read']} rows rejected ({fraction:.1%}), more "
            f"than data.max_rejected_fraction={cfg.max_rejected_fraction:.1%} ({reasons}); "
            f"first: {_first_rejections(out)}; all of them in {out}/{REJECTED_FILE}. Fix the "
            "input or its format keys, or raise the limit."
        )
    empty = [split for split, count in stats["count"].items() if count == 0]
    if empty:
        counts = ", ".join(f"{split} {count}" for split, count in stats["count"].items())
        raise EmptySplitError(
            f"ingest kept no {' and no '.join(empty)} rows ({counts}; {stats['read']} read, "
            f"{stats['rejected_total']} rejected{': ' + reasons if reasons else ''}) from "
            f"{_configured_inputs(cfg)}. Later stages read every split: give more rows, a "
            "larger data.split fraction or non-empty validation/test files."
        )
