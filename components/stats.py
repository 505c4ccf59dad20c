"""Small statistics helpers for the data stages: a mergeable histogram and its summary."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam


class _CountsCombineFn(beam.CombineFn):
    """A {key: count} accumulator that merges across workers by adding counts."""

    def create_accumulator(self) -> dict:
        return {}

    def merge_accumulators(self, accumulators) -> dict:
        merged: Counter = Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return dict(merged)


class Histogram(_CountsCombineFn):
    """Counts integer values; the accumulator is {value: count}, so it merges across workers."""

    def add_input(self, accumulator: dict[int, int], value: int) -> dict[int, int]:
        accumulator[value] = accumulator.get(value, 0) + 1
        return accumulator

    def extract_output(self, accumulator: dict[int, int]) -> dict[str, int]:
        # JSON keys are strings; sorted so the output is byte-stable.
        return {str(k): accumulator[k] for k in sorted(accumulator)}


def percentile(histogram: dict[int, int], fraction: float) -> int:
    """The smallest value with at least `fraction` of the counts at or below it."""
    total = sum(histogram.values())
    running = 0
    for value in sorted(histogram):
        running += histogram[value]
        if running >= fraction * total:
            return value
    raise ValueError("empty histogram")


def summarize_histogram(histogram: dict[str, int]) -> dict:
    """Count, min, max, mean and percentiles of a histogram with string keys."""
    counts = {int(k): v for k, v in histogram.items()}
    total = sum(counts.values())
    return {
        "count": total,
        "min": min(counts),
        "max": max(counts),
        "mean": round(sum(k * v for k, v in counts.items()) / total, 3),
        "p50": percentile(counts, 0.5),
        "p95": percentile(counts, 0.95),
        "p99": percentile(counts, 0.99),
        "histogram": {str(k): counts[k] for k in sorted(counts)},
    }


class CharacterCounts(_CountsCombineFn):
    """Counts characters over many texts; the accumulator is {char: count}."""

    def add_input(self, accumulator: dict[str, int], text: str) -> dict[str, int]:
        for char, count in Counter(text).items():
            accumulator[char] = accumulator.get(char, 0) + count
        return accumulator

    def extract_output(self, accumulator: dict[str, int]) -> dict[str, int]:
        return dict(sorted(accumulator.items()))


def summarize_characters(counts: dict[str, int], top: int = 10) -> dict:
    """Distinct characters, the non-ASCII share and the most frequent non-ASCII characters."""
    total = sum(counts.values())
    non_ascii = {c: n for c, n in counts.items() if ord(c) > 127}
    frequent = sorted(non_ascii.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {
        "distinct": len(counts),
        "non_ascii_share": round(sum(non_ascii.values()) / max(total, 1), 6),
        "top_non_ascii": [[char, count] for char, count in frequent],
    }


def summarize_ratio(histogram: dict[str, int]) -> dict:
    """Target/source word-count ratios kept in tenths (key "12" = 1.2): percentiles and mean."""
    counts = {int(k): v for k, v in histogram.items()}
    total = sum(counts.values())
    return {
        "p5": percentile(counts, 0.05) / 10,
        "p50": percentile(counts, 0.5) / 10,
        "p95": percentile(counts, 0.95) / 10,
        "mean": round(sum(k * v for k, v in counts.items()) / total / 10, 3),
    }
