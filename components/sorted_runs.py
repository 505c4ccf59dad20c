"""External sorting for the data stages: sorted runs spilled to disk, then merged while streaming.

The data stages write every output file in a fixed sorted order, so the same input always gives
byte-identical files. Sorting a whole shard in memory (or grouping it with a GroupByKey, which
Beam's local runner holds in memory) makes memory grow with the corpus. Instead each worker
buffers (group, entry) elements up to `SPILL_BYTES`, sorts the buffer and writes one run file per
group (e.g. per output shard); only the run paths go through a GroupByKey; one worker per group
then merges that group's runs with `heapq.merge`. Memory is bounded by the spill buffer and one
read buffer per open run, whatever the corpus size.

Run files live under a directory the caller owns and removes after the pipeline: a DoFn never
deletes its input, so a retried bundle finds its runs again.
"""

from __future__ import annotations

import heapq
import os
import pickle
import uuid
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

Entry = tuple  # a tuple of str/bytes fields, compared field by field
# Estimated Python memory of a worker's buffer (payload plus object overhead) before it spills.
SPILL_BYTES = 32 * 2**20
# Python object overhead of one buffered entry beyond its payload (tuple, str headers, list slot).
_ENTRY_OVERHEAD = 200
# At most this many runs are merged at once; more are merged in rounds, bounding open files.
MAX_FAN_IN = 128
_READ_BUFFER = 1 << 16


def write_run(path: str, entries: Iterable[Entry]) -> None:
    """Writes entries (already in order) to a run file, one pickle each."""
    with open(path, "wb") as stream:
        for entry in entries:
            stream.write(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))


def read_run(path: str) -> Iterator[Entry]:
    """The entries of a run file, in their order; only files this module wrote are read."""
    with open(path, "rb", buffering=_READ_BUFFER) as stream:
        while True:
            try:
                yield pickle.load(stream)
            except EOFError:
                return


def merge_runs(paths: Iterable[str]) -> Iterator[Entry]:
    """All entries of sorted runs in one sorted stream (rounds of MAX_FAN_IN runs at most)."""
    pending = sorted(paths)
    while len(pending) > MAX_FAN_IN:
        batch, pending = pending[:MAX_FAN_IN], pending[MAX_FAN_IN:]
        combined = f"{batch[0]}.merged-{uuid.uuid4().hex}"
        write_run(combined, heapq.merge(*map(read_run, batch)))
        pending.append(combined)
    return heapq.merge(*map(read_run, pending))


class SpillSortedRuns(beam.DoFn):
    """Buffers (group, entry) elements; spills each group's entries, sorted, to a run file.

    A spill happens when the buffer holds about `spill_bytes` and at the end of each bundle.
    Outputs (group, run path) per run written.
    """

    def __init__(self, directory: str, spill_bytes: int | None = None):
        self.directory = directory
        self.spill_bytes = spill_bytes or SPILL_BYTES

    def start_bundle(self):
        self._buffer: dict[str, list[Entry]] = {}
        self._bytes = 0

    def process(self, element: tuple[str, Entry]):
        group, entry = element
        self._buffer.setdefault(group, []).append(entry)
        self._bytes += _ENTRY_OVERHEAD + sum(len(field) for field in entry)
        if self._bytes >= self.spill_bytes:
            yield from self._spill()

    def finish_bundle(self):
        for group_and_path in self._spill():
            yield GlobalWindows.windowed_value(group_and_path)

    def _spill(self) -> Iterator[tuple[str, str]]:
        os.makedirs(self.directory, exist_ok=True)
        buffer, self._buffer, self._bytes = self._buffer, {}, 0
        for group in sorted(buffer):
            entries = buffer.pop(group)
            entries.sort()
            path = os.path.join(self.directory, f"{group}-{uuid.uuid4().hex}.run")
            write_run(path, entries)
            del entries
            yield group, path


class SortedRuns(beam.PTransform):
    """(group, entry) elements -> (group, run paths): each group's entries spilled in sorted runs.

    `merge_runs(paths)` then streams a group's entries in sorted order.
    """

    def __init__(self, directory: str, spill_bytes: int | None = None):
        super().__init__()
        self.directory = directory
        self.spill_bytes = spill_bytes

    def expand(self, entries):
        return (
            entries
            | "Spill" >> beam.ParDo(SpillSortedRuns(self.directory, self.spill_bytes))
            | "GroupRuns" >> beam.GroupByKey()
            | "SortPaths" >> beam.MapTuple(lambda group, paths: (group, sorted(paths)))
        )
