"""Cuts large line-based input files into chunks that Beam workers read in parallel.

A chunk is an `InputFile` with a byte offset, the number of lines before it and how many lines it
holds, so each row keeps its origin (`file:line`) in the whole file. Line-aligned text pairs are
cut at the same line numbers in both files. gzip files (no seeking), CSV (a quoted field may span
lines) and TFRecord files stay whole.
"""

from __future__ import annotations

import dataclasses
import os

from components.sources import InputFile

# About 3-10 MB of sentences: enough chunks to keep every core busy on a large corpus, few enough
# that finding the cut points (one pass over the bytes) costs little.
LINES_PER_CHUNK = 50_000
_CHUNKABLE_FORMATS = ("text", "tsv", "jsonl")
_BLOCK = 1 << 20


def line_starts(path: str, every: int) -> list[int]:
    """Byte offsets at which lines `every`, `2 * every`, ... (counted from 0) start.

    Only lines that exist are listed: an offset at the very end of the file is not.
    """
    starts: list[int] = []
    lines, position, wanted = 0, 0, every
    with open(path, "rb") as stream:
        while block := stream.read(_BLOCK):
            start = 0
            while lines + block.count(b"\n", start) >= wanted:
                for _ in range(wanted - lines):
                    start = block.index(b"\n", start) + 1
                lines = wanted
                starts.append(position + start)
                wanted += every
            lines += block.count(b"\n", start)
            position += len(block)
    return [offset for offset in starts if offset < position]


def file_chunks(
    file: InputFile, file_format: str, lines_per_chunk: int | None = None
) -> list[InputFile]:
    """`file` cut into chunks of `lines_per_chunk` (LINES_PER_CHUNK) lines, or `[file]` when it
    cannot be cut."""
    lines_per_chunk = lines_per_chunk or LINES_PER_CHUNK
    paths = [file.path, file.target_path] if file_format == "text" else [file.path]
    if file_format not in _CHUNKABLE_FORMATS or any(p.endswith(".gz") for p in paths):
        return [file]
    starts = [0, *line_starts(file.path, lines_per_chunk)]
    if file_format == "text":
        # A shorter target file has no line at the later cuts: those chunks read it at its end.
        target = [0, *line_starts(file.target_path, lines_per_chunk)]
        target += [os.path.getsize(file.target_path)] * (len(starts) - len(target))
    else:
        target = [0] * len(starts)
    return [
        dataclasses.replace(
            file,
            first_line=index * lines_per_chunk,
            offset=offset,
            target_offset=target[index],
            max_lines=None if index == len(starts) - 1 else lines_per_chunk,
        )
        for index, offset in enumerate(starts)
    ]
