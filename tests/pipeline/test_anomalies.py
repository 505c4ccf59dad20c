"""Drift between two runs' ingest statistics."""

import copy

import pytest

from pipeline.anomalies import detect_drift, jensen_shannon


def _stats(lengths: dict[str, int], count=1000, rejected=None, non_ascii=0.1):
    rejected = rejected or {}
    total = sum(lengths.values())
    mean = sum(int(k) * v for k, v in lengths.items()) / total
    side = {"mean": mean, "histogram": lengths}
    return {
        "count": {"train": count, "validation": 50, "test": 50},
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "read": count + 100 + sum(rejected.values()),
        "words": {"train": {"source": side, "target": side}},
        "length_ratio": {"train": {"p50": 1.0}},
        "characters": {"train": {"source": {"non_ascii_share": non_ascii}}},
    }


BASE = _stats({"5": 300, "10": 500, "15": 200})


def test_jensen_shannon_bounds():
    assert jensen_shannon({"1": 5}, {"1": 50}) == 0.0
    assert jensen_shannon({"1": 5}, {"2": 5}) == pytest.approx(1.0)


def test_same_statistics_have_no_drift():
    assert detect_drift(BASE, copy.deepcopy(BASE)) == []


def test_shifted_lengths_are_reported():
    longer = _stats({"10": 300, "15": 500, "20": 200})
    kinds = [(a["kind"], a["where"]) for a in detect_drift(BASE, longer)]
    assert kinds == [
        ("length_shift", "train/source"),
        ("length_distribution", "train/source"),
        ("length_shift", "train/target"),
        ("length_distribution", "train/target"),
    ]


def test_counts_rejections_and_characters():
    current = _stats(
        BASE["words"]["train"]["source"]["histogram"],
        count=500,
        rejected={"too_long": 90},
        non_ascii=0.3,
    )
    found = {a["kind"]: a for a in detect_drift(BASE, current)}
    assert set(found) == {"count_change", "rejected_share", "new_rejection_reason", "charset_shift"}
    assert (found["count_change"]["previous"], found["count_change"]["current"]) == (1000, 500)
    assert found["new_rejection_reason"]["where"] == "too_long"
