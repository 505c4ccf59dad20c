"""Ingest stage (Apache Beam): read raw pairs, normalize, validate, de-duplicate, split, write.

Every row read ends up either in a split or in `rejected/` with a reason, so
kept + rejected = read always holds.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from components import builtin_corpus
from components.data_report import write_statistics_summaries
from components.records import (
    SPLITS,
    WriteSortedShards,
    remove_spilled_runs,
    stable_hash,
    text_example,
)
from components.remote import localize
from components.sources import (
    RawPair,
    input_files,
    read_aligned_files,  # noqa: F401  (re-exported: callers import it from here)
    read_input,
)
from components.stats import (
    CharacterCounts,
    Histogram,
    summarize_characters,
    summarize_histogram,
    summarize_ratio,
)
from pipeline.artifacts import write_json
from pipeline.config import DataConfig

REJECTED = "rejected"


@dataclasses.dataclass
class IngestResult:
    counts: dict[str, int]
    rejected: dict[str, int]


def normalize_text(text: str, form: str) -> str:
    """Unicode normal form with runs of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize(form, text).split())


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


# Control characters other than whitespace (which normalization turns into spaces) mean a
# broken or binary row, never a sentence.
_WHITESPACE = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85")


def has_control_characters(text: str) -> bool:
    """True when `text` holds a Unicode control character (category Cc) that is not whitespace."""
    return any(unicodedata.category(ch) == "Cc" and ch not in _WHITESPACE for ch in text)


def validate_pair(
    pair: RawPair,
    form: str,
    max_words: int,
    max_length_ratio: float = 9.0,
    reject_identical: bool = True,
) -> tuple[str, str] | str:
    """The normalized (source, target), or the reason the row is rejected.

    Reasons, checked in this order: the reader's own (e.g. "malformed"), "undecodable",
    "control_characters", "empty_source", "empty_target", "too_long", "length_ratio",
    "identical".
    """
    if pair.problem:  # found while reading, e.g. "malformed"
        return pair.problem
    try:
        source, target = _decode(pair.source), _decode(pair.target)
    except UnicodeDecodeError:
        return "undecodable"
    if has_control_characters(source) or has_control_characters(target):
        return "control_characters"
    source, target = normalize_text(source, form), normalize_text(target, form)
    if not source:
        return "empty_source"
    if not target:
        return "empty_target"
    source_words, target_words = len(source.split()), len(target.split())
    if max(source_words, target_words) > max_words:
        return "too_long"
    if max(source_words, target_words) > max_length_ratio * min(source_words, target_words):
        return "length_ratio"
    if reject_identical and source == target:
        return "identical"
    return source, target


def split_of(source: str, validation: float, test: float) -> str:
    """Deterministic split from a hash of the source sentence, so a sentence has one split."""
    position = stable_hash(source) / 2**64
    if position < test:
        return "test"
    return "validation" if position < test + validation else "train"


def _rejection(pair: RawPair, reason: str) -> dict:
    def show(value: bytes | str) -> str:
        return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value

    rejection = {
        "reason": reason,
        "origin": pair.origin,
        "source": show(pair.source),
        "target": show(pair.target),
    }
    if pair.detail:
        rejection["detail"] = pair.detail
    return rejection


class ValidatePairs(beam.DoFn):
    """Normalizes pairs; emits ((split, source, target), origin), rejects to a tag."""

    def __init__(self, cfg: DataConfig):
        self.rules = (cfg.unicode_form, cfg.max_words, cfg.max_length_ratio, cfg.reject_identical)

    def process(self, pair: RawPair):
        result = validate_pair(pair, *self.rules)
        if isinstance(result, str):
            yield beam.pvalue.TaggedOutput(REJECTED, _rejection(pair, result))
        else:
            yield (pair.split, *result), pair.origin


def first_of_duplicates(item: tuple[tuple[str, str, str], list[str]]):
    """Keeps the earliest occurrence of an exact duplicate pair; the others are rejected.

    Duplicates count within one input split only: a given test file keeps its own rows.
    """
    (split, source, target), origins = item
    first, *others = sorted(origins)
    yield split, source, target
    for origin in others:
        rejection = _rejection(RawPair(source, target, origin), "duplicate")
        yield beam.pvalue.TaggedOutput(REJECTED, rejection)


class ReadPairs(beam.PTransform):
    """Reads the configured raw corpus as RawPair elements."""

    def __init__(self, cfg: DataConfig, seed: int):
        super().__init__()
        self.cfg = cfg
        self.seed = seed

    def expand(self, pbegin):
        if self.cfg.format == "builtin":
            pairs = builtin_corpus.generate_pairs(self.cfg.builtin_pairs, self.seed)
            rows = [RawPair(s, t, f"builtin:{i + 1}") for i, (s, t) in enumerate(pairs)]
            return pbegin | "CreatePairs" >> beam.Create(rows, reshuffle=False)
        return (
            pbegin
            | "InputFiles" >> beam.Create(input_files(self.cfg))
            | "ReadFiles" >> beam.FlatMap(read_input, self.cfg)
        )


def _hash_fractions(cfg: DataConfig) -> tuple[float, float]:
    """Validation and test fractions for hashed rows: none for a split given by files."""
    given = {file.split for file in input_files(cfg)}
    validation = 0.0 if "validation" in given else cfg.split.validation
    return validation, 0.0 if "test" in given else cfg.split.test


def _row_measures(kv):
    split, (source, target) = kv
    source_words, target_words = len(source.split()), len(target.split())
    yield ("words", split, "source"), source_words
    yield ("words", split, "target"), target_words
    yield ("ratio", split, ""), round(10 * target_words / source_words)


def _row_stats(split_rows) -> beam.PCollection:
    """Length histograms per split and side, length-ratio histograms, character counts."""
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
    validated = (
        pipeline
        | "Read" >> ReadPairs(cfg, seed)
        | "Validate" >> beam.ParDo(ValidatePairs(cfg)).with_outputs(REJECTED, main="kept")
    )
    deduplicated = (
        validated.kept
        | "GroupDuplicates" >> beam.GroupByKey()
        | "DropDuplicates" >> beam.FlatMap(first_of_duplicates).with_outputs(REJECTED, main="kept")
    )
    validation, test = _hash_fractions(cfg)
    rows = deduplicated.kept | "AssignSplit" >> beam.Map(
        lambda row: (row[0] or split_of(row[1], validation, test), (row[1], row[2]))
    )
    counts = []
    for name in SPLITS:
        counts.append(
            rows
            | f"Only{name}" >> beam.Filter(lambda kv, n=name: kv[0] == n)
            | f"Encode{name}"
            >> beam.Map(lambda kv: (f"{kv[1][0]}\t{kv[1][1]}", text_example(kv[1][0], kv[1][1])))
            | f"Write{name}" >> WriteSortedShards(str(out / name), cfg.num_shards)
            | f"Sum{name}" >> beam.CombineGlobally(sum)
            | f"Label{name}" >> beam.Map(lambda n, s=name: ("count", [s], n))
        )
    rejected = (validated[REJECTED], deduplicated[REJECTED]) | "AllRejected" >> beam.Flatten()
    _ = (
        rejected
        | "RejectedJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
        | "WriteRejected"
        >> beam.io.WriteToText(str(out / "rejected"), file_name_suffix=".jsonl", num_shards=1)
    )
    reasons = (
        rejected
        | "Reasons" >> beam.Map(lambda r: r["reason"])
        | "CountReasons" >> beam.combiners.Count.PerElement()
        | "LabelReasons" >> beam.MapTuple(lambda reason, n: ("rejected", [reason], n))
    )
    stats = [*counts, reasons, _row_stats(rows)]
    _ = (
        stats
        | "AllStats" >> beam.Flatten()
        | "StatsJson" >> beam.Map(json.dumps)
        | "WriteStats"
        >> beam.io.WriteToText(str(out / "_stats"), file_name_suffix=".jsonl", num_shards=1)
    )


def _collect_statistics(out: Path) -> dict:
    stats: dict = {
        "count": {s: 0 for s in SPLITS},
        "rejected": {},
        "words": {},
        "length_ratio": {},
        "characters": {},
    }
    for path in sorted(out.glob("_stats*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            kind, key, value = json.loads(line)
            if kind == "words":
                stats["words"].setdefault(key[0], {})[key[1]] = summarize_histogram(value)
            elif kind == "ratio":
                stats["length_ratio"][key[0]] = summarize_ratio(value)
            elif kind == "chars":
                stats["characters"].setdefault(key[0], {})[key[1]] = summarize_characters(value)
            else:
                stats[kind][key[0]] = value
        path.unlink()
    stats["kept"] = sum(stats["count"].values())
    stats["rejected_total"] = sum(stats["rejected"].values())
    stats["read"] = stats["kept"] + stats["rejected_total"]
    return stats


def ingest(cfg: DataConfig, *, out: Path, seed: int, beam_args: list[str]) -> IngestResult:
    """Runs the ingest stage; writes split TFRecords, `statistics.json` and rejected rows."""
    cfg = localize(cfg)  # remote inputs: downloaded once, verified, then read from the cache
    _check_inputs(cfg)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build_ingest(pipeline, cfg, out, seed)
    remove_spilled_runs(out)
    stats = _collect_statistics(out)
    write_json(out / "statistics.json", stats)
    write_statistics_summaries(stats, out / "logs")
    _check_rejected_fraction(stats, cfg.max_rejected_fraction)
    return IngestResult(counts=stats["count"], rejected=stats["rejected"])


class TooManyRejectedError(ValueError):
    """More rows were rejected than `data.max_rejected_fraction` allows."""


def _check_rejected_fraction(stats: dict, limit: float) -> None:
    """Fails the stage when the input looks broken rather than merely dirty."""
    fraction = stats["rejected_total"] / max(stats["read"], 1)
    if fraction > limit:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats["rejected"].items()))
        raise TooManyRejectedError(
            f"{stats['rejected_total']} of {stats['read']} rows rejected ({fraction:.1%}), more "
            f"than data.max_rejected_fraction={limit:.1%} ({reasons}). See rejected-*.jsonl; "
            "fix the input or its format keys, or raise the limit."
        )
