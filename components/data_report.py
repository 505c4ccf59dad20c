"""Ingest statistics in TensorBoard: length histograms per split and side, and a text table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata


def statistics_table(stats: dict) -> str:
    """A markdown table of rows per split, lengths per side and rejections per reason."""
    lines = [
        "| split | rows | source words p50/p95 | target words p50/p95 | ratio p50 |",
        "|---|---|---|---|---|",
    ]
    for split, count in stats["count"].items():
        words = stats["words"].get(split, {})
        cells = [
            f"{words[side]['p50']}/{words[side]['p95']}" if side in words else "-"
            for side in ("source", "target")
        ]
        ratio = stats.get("length_ratio", {}).get(split, {}).get("p50", "-")
        lines.append(f"| {split} | {count} | {cells[0]} | {cells[1]} | {ratio} |")
    lines += ["", "| rejected reason | rows |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in sorted(stats["rejected"].items())]
    lines.append(f"| total | {stats['rejected_total']} of {stats['read']} read |")
    return "\n".join(lines)


def histogram_buckets(histogram: dict[str, int]) -> np.ndarray:
    """TensorBoard's histogram tensor ([left edge, right edge, count] rows) of integer counts.

    One bucket per word count, written from the counts: expanding them into one value per row
    (as `tf.summary.histogram` needs) would take memory that grows with the corpus.
    """
    rows = [[int(k), int(k) + 1, n] for k, n in sorted(histogram.items(), key=lambda i: int(i[0]))]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def write_statistics_summaries(stats: dict, logdir: Path) -> None:
    """Writes the table and one word-length histogram per split and side."""
    metadata = histogram_metadata.create_summary_metadata(display_name=None, description=None)
    with tf.summary.create_file_writer(str(logdir)).as_default():
        tf.summary.text("statistics", statistics_table(stats), step=0)
        for split, sides in stats["words"].items():
            for side, summary in sides.items():
                buckets = histogram_buckets(summary["histogram"])
                tf.summary.write(f"words/{split}/{side}", buckets, step=0, metadata=metadata)
