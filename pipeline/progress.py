"""A small progress display for long loops: a live line on a terminal, a few lines in logs."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints `label: done/total (rate/s, ETA)` to stderr as work advances."""

    def __init__(self, label: str, total: int, min_interval: float = 5.0):
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        # The first update always prints: perf_counter's zero is arbitrary (often the boot).
        self.last_print = float("-inf")
        self.printed = -1  # `done` at the last line printed
        self.interactive = sys.stderr.isatty()
        # Logs get a line every few seconds, a terminal several per second.
        self.min_interval = 0.2 if self.interactive else min_interval

    def update(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if now - self.last_print >= self.min_interval:
            self.last_print = now
            self._print(now)

    def _print(self, now: float, end: str | None = None) -> None:
        self.printed = self.done
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        line = f"{self.label}: {self.done}/{self.total} ({rate:.1f}/s, ETA {eta:.0f}s)"
        if end is None:
            end = "\r" if self.interactive else "\n"
        print(line, end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.interactive or self.printed != self.done:
            self._print(time.perf_counter(), end="\n")
