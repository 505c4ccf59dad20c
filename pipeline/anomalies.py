"""Data drift between two runs' ingest statistics: what changed enough to look at.

The runner compares the ingest statistics of this run with those of the previous run in the
same workdir and writes what it finds to `<workdir>/anomalies.json` (and `summary.json`).
Drift is reported, not fatal: a new corpus may differ on purpose.
"""

from __future__ import annotations

import math

# Thresholds: large enough that re-splitting the same corpus never trips them.
COUNT_CHANGE = 0.2  # relative change of a split's row count
MEAN_LENGTH_SHIFT = 0.1  # relative change of the mean sentence length
LENGTH_DIVERGENCE = 0.05  # Jensen-Shannon divergence (bits) of the length histograms
RATIO_SHIFT = 0.2  # absolute change of the median target/source length ratio
REJECTED_SHARE_RISE = 0.01  # absolute rise of the rejected share (and at least 1.5x)
NON_ASCII_SHIFT = 0.05  # absolute change of the non-ASCII character share


def jensen_shannon(p_counts: dict[str, int], q_counts: dict[str, int]) -> float:
    """Jensen-Shannon divergence in bits between two histograms (0 = same, 1 = disjoint)."""
    keys = set(p_counts) | set(q_counts)
    p_total, q_total = sum(p_counts.values()), sum(q_counts.values())
    divergence = 0.0
    for key in keys:
        p = p_counts.get(key, 0) / p_total
        q = q_counts.get(key, 0) / q_total
        m = (p + q) / 2
        if p:
            divergence += 0.5 * p * math.log2(p / m)
        if q:
            divergence += 0.5 * q * math.log2(q / m)
    return divergence


def _anomaly(kind: str, where: str, previous, current, message: str) -> dict:
    return {
        "kind": kind,
        "where": where,
        "previous": previous,
        "current": current,
        "message": message,
    }


def _count_anomalies(previous: dict, current: dict) -> list[dict]:
    found = []
    for split, before in previous["count"].items():
        after = current["count"].get(split, 0)
        if before and abs(after - before) / before > COUNT_CHANGE:
            found.append(
                _anomaly(
                    "count_change",
                    split,
                    before,
                    after,
                    f"{split} rows changed from {before} to {after}",
                )
            )
    before = previous["rejected_total"] / max(previous["read"], 1)
    after = current["rejected_total"] / max(current["read"], 1)
    if after - before > REJECTED_SHARE_RISE and after > 1.5 * before:
        found.append(
            _anomaly(
                "rejected_share",
                "all",
                round(before, 4),
                round(after, 4),
                f"rejected share rose from {before:.1%} to {after:.1%}",
            )
        )
    for reason, count in sorted(current["rejected"].items()):
        if count and not previous["rejected"].get(reason):
            found.append(
                _anomaly(
                    "new_rejection_reason",
                    reason,
                    0,
                    count,
                    f"{count} rows rejected as {reason}, none before",
                )
            )
    return found


def _length_anomalies(previous: dict, current: dict) -> list[dict]:
    found = []
    for split, sides in current["words"].items():
        for side, now in sides.items():
            before = previous["words"].get(split, {}).get(side)
            if before is None:
                continue
            where = f"{split}/{side}"
            shift = abs(now["mean"] - before["mean"]) / max(before["mean"], 1e-9)
            if shift > MEAN_LENGTH_SHIFT:
                found.append(
                    _anomaly(
                        "length_shift",
                        where,
                        before["mean"],
                        now["mean"],
                        f"{where} mean length moved {shift:.0%}",
                    )
                )
            divergence = jensen_shannon(before["histogram"], now["histogram"])
            if divergence > LENGTH_DIVERGENCE:
                found.append(
                    _anomaly(
                        "length_distribution",
                        where,
                        None,
                        round(divergence, 4),
                        f"{where} length histogram diverged (JS {divergence:.3f})",
                    )
                )
    for split, now in current.get("length_ratio", {}).items():
        before = previous.get("length_ratio", {}).get(split)
        if before and abs(now["p50"] - before["p50"]) >= RATIO_SHIFT:
            found.append(
                _anomaly(
                    "ratio_shift",
                    split,
                    before["p50"],
                    now["p50"],
                    f"{split} median length ratio moved",
                )
            )
    return found


def _character_anomalies(previous: dict, current: dict) -> list[dict]:
    found = []
    for split, sides in current.get("characters", {}).items():
        for side, now in sides.items():
            before = previous.get("characters", {}).get(split, {}).get(side)
            if before is None:
                continue
            change = now["non_ascii_share"] - before["non_ascii_share"]
            if abs(change) > NON_ASCII_SHIFT:
                found.append(
                    _anomaly(
                        "charset_shift",
                        f"{split}/{side}",
                        before["non_ascii_share"],
                        now["non_ascii_share"],
                        f"{split}/{side} non-ASCII share moved {change:+.1%}",
                    )
                )
    return found


def detect_drift(previous: dict, current: dict) -> list[dict]:
    """Anomalies between two ingest `statistics.json` dicts, in a fixed order."""
    return (
        _count_anomalies(previous, current)
        + _length_anomalies(previous, current)
        + _character_anomalies(previous, current)
    )
