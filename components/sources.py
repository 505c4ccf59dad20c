"""Readers of the ingest input formats: each streams one file and yields its rows as RawPairs.

A row that cannot be parsed is yielded too, with `problem="malformed"` and a `detail`, so the
ingest stage rejects it with its origin instead of failing: every row read is kept or rejected.
Bytes that are not UTF-8 are passed on as bytes, for the ingest stage to reject as `undecodable`.
A file whose name ends in ".gz" is read through gzip. A file that stops being readable part way
(truncated or corrupt compression, a bad TFRecord checksum) ends there with one malformed row.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import glob
import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import tensorflow as tf
from google.protobuf.message import DecodeError

from pipeline.config import DataConfig

MALFORMED = "malformed"
UNDECODABLE = "undecodable"
SPLIT_NAMES = ("", "validation", "test")  # "" = the main input, split by hash
# What reading a truncated or corrupt gzip stream raises.
_READ_ERRORS = (OSError, EOFError, zlib.error)
_NOT_FOUND = object()


@dataclasses.dataclass
class RawPair:
    source: bytes | str
    target: bytes | str
    origin: str  # where the row came from, e.g. "train.en:17", "builtin:3", "a.tfrecord:record 2"
    split: str = ""  # a split fixed by its input files; "" = assigned by hash
    problem: str = ""  # a rejection reason found while reading, e.g. "malformed"; "" = none
    detail: str = ""  # what exactly the problem is, shown in the rejected-rows file


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One file (or a chunk of one, components/chunks.py) to read and the split its rows are."""

    path: str
    split: str = ""  # "validation" or "test" for a given split's file; "" = assigned by hash
    target_path: str = ""  # format text only: the file line-aligned with `path`
    # A chunk: the lines after `first_line` lines of the file, starting at byte `offset` (and at
    # `target_offset` in the target file), `max_lines` of them (None: to the end of the file).
    first_line: int = 0
    offset: int = 0
    target_offset: int = 0
    max_lines: int | None = None


def open_binary(path: str) -> IO[bytes]:
    """The file opened for reading bytes; a name ending in ".gz" is decompressed as it is read."""
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _unreadable(origin: str, split: str, error: object) -> RawPair:
    return RawPair(b"", b"", origin, split, MALFORMED, f"file unreadable from here: {error}")


def read_aligned_files(
    paths: tuple[str, str, str],
    offsets: tuple[int, int] = (0, 0),
    first_line: int = 0,
    max_lines: int | None = None,
) -> Iterator[RawPair]:
    """Yields line pairs of two line-aligned files; a line without a partner is yielded with b"".

    `paths` is (source file, target file, split the rows belong to or ""). A chunk starts at byte
    `offsets` of the two files, after `first_line` lines, and holds `max_lines` lines at most.
    """
    source_path, target_path, split = paths
    name = Path(source_path).name
    line = first_line
    end = None if max_lines is None else first_line + max_lines
    with open_binary(source_path) as sources, open_binary(target_path) as targets:
        _seek(sources, offsets[0])
        _seek(targets, offsets[1])
        while line != end:
            try:
                source, target = sources.readline(), targets.readline()
            except _READ_ERRORS as error:
                yield _unreadable(f"{name}:{line + 1}", split, error)
                return
            if not source and not target:
                return
            line += 1
            source, target = source.rstrip(b"\r\n"), target.rstrip(b"\r\n")
            yield RawPair(source, target, f"{name}:{line}", split)


def _seek(stream: IO[bytes], offset: int) -> None:
    if offset:  # only plain files are cut into chunks; gzip streams are read from the start
        stream.seek(offset)


def _read_lines(file: InputFile, parse: Callable[[bytes, str, str], RawPair]) -> Iterator[RawPair]:
    """parse(line without its line end, origin, split) for each line of a text file (chunk)."""
    name = Path(file.path).name
    number = file.first_line
    end = None if file.max_lines is None else file.first_line + file.max_lines
    with open_binary(file.path) as stream:
        _seek(stream, file.offset)
        while number != end:
            try:
                line = stream.readline()
            except _READ_ERRORS as error:
                yield _unreadable(f"{name}:{number + 1}", file.split, error)
                return
            if not line:
                return
            number += 1
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            yield parse(line.rstrip(b"\r\n"), f"{name}:{number}", file.split)


def _pick_columns(
    fields: list[bytes], source_column: int, target_column: int, origin: str, split: str
) -> RawPair:
    def column(index: int) -> bytes:
        return fields[index] if index < len(fields) else b""

    pair = RawPair(column(source_column), column(target_column), origin, split)
    missing = [c for c in (source_column, target_column) if c >= len(fields)]
    if missing:
        pair.problem = MALFORMED
        pair.detail = f"no column {missing[0]}: the row has {len(fields)}"
    return pair


def read_tsv(
    path: str | InputFile, source_column: int = 0, target_column: int = 1, split: str = ""
) -> Iterator[RawPair]:
    """Rows of a tab-separated file, one per line, without quoting (the Anki/Tatoeba format)."""

    def parse(line: bytes, origin: str, split: str) -> RawPair:
        return _pick_columns(line.split(b"\t"), source_column, target_column, origin, split)

    return _read_lines(_as_input_file(path, split), parse)


def read_csv(
    path: str, source_column: int = 0, target_column: int = 1, split: str = ""
) -> Iterator[RawPair]:
    """Rows of a comma-separated file as Python's csv module reads them.

    A quoted field may hold commas and line breaks, so a row may span lines: its origin is the
    line it starts on.
    """
    name = Path(path).name
    with open_binary(path) as stream:
        # surrogateescape keeps bytes that are not UTF-8 so they can be restored and rejected.
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        rows = csv.reader(text)
        while True:
            start = rows.line_num + 1
            origin = f"{name}:{start}"
            try:
                fields = next(rows, None)
            except csv.Error as error:
                yield RawPair(b"", b"", origin, split, MALFORMED, f"CSV: {error}")
                if rows.line_num < start:  # nothing was consumed: stop rather than loop
                    return
                continue
            except _READ_ERRORS as error:
                yield _unreadable(origin, split, error)
                return
            if fields is None:
                return
            fields = [field.encode("utf-8", "surrogateescape") for field in fields]
            yield _pick_columns(fields, source_column, target_column, origin, split)


def _json_field(row: dict, name: str) -> object:
    """row[name]; a dotted name that is not a key reaches into nested objects ("translation.en")."""
    if name in row:
        return row[name]
    value: object = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _NOT_FOUND
        value = value[part]
    return value


def _json_pair(
    line: bytes, origin: str, split: str, source_field: str, target_field: str
) -> RawPair:
    try:
        row = json.loads(line.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        return RawPair(line, b"", origin, split, MALFORMED, f"invalid JSON: {error}")
    if not isinstance(row, dict):
        return RawPair(line, b"", origin, split, MALFORMED, "not a JSON object")
    values, problem, detail = [], "", ""
    for field in (source_field, target_field):
        value = _json_field(row, field)
        if value is _NOT_FOUND or not isinstance(value, str):
            values.append(b"")
            if not problem:
                problem = MALFORMED
                detail = (
                    f"no field {field!r}" if value is _NOT_FOUND else f"{field!r} is not a string"
                )
            continue
        try:
            values.append(value.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
            values.append(value.encode("utf-8", "backslashreplace"))
            if not problem:
                problem, detail = UNDECODABLE, f"{field!r} is not valid Unicode"
    return RawPair(values[0], values[1], origin, split, problem, detail)


def read_jsonl(
    path: str | InputFile, source_field: str = "source", target_field: str = "target", split=""
) -> Iterator[RawPair]:
    """Rows of a file with one JSON object per line; the two fields must hold strings."""

    def parse(line: bytes, origin: str, split: str) -> RawPair:
        return _json_pair(line, origin, split, source_field, target_field)

    return _read_lines(_as_input_file(path, split), parse)


def _as_input_file(path: str | InputFile, split: str) -> InputFile:
    return path if isinstance(path, InputFile) else InputFile(path, split)


def _example_pair(
    record: bytes, origin: str, split: str, source_feature: str, target_feature: str
) -> RawPair:
    try:
        features = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        return RawPair(b"", b"", origin, split, MALFORMED, "not a tf.train.Example")
    values, detail = [], ""
    for name in (source_feature, target_feature):
        # `in` first: indexing a protobuf map would insert the missing key.
        feature = features[name] if name in features else None
        if feature is None or feature.WhichOneof("kind") != "bytes_list":
            values.append(b"")
            detail = detail or f"no bytes feature {name!r}"
        elif len(feature.bytes_list.value) != 1:
            values.append(b"")
            detail = detail or f"{name!r} has {len(feature.bytes_list.value)} values, not 1"
        else:
            values.append(feature.bytes_list.value[0])
    return RawPair(values[0], values[1], origin, split, MALFORMED if detail else "", detail)


def read_tfrecord(
    path: str, source_feature: str = "source", target_feature: str = "target", split: str = ""
) -> Iterator[RawPair]:
    """Rows of a TFRecord file of tf.train.Example with one-value bytes features.

    The origin counts records from 1 ("pairs.tfrecord:record 3"); record checksums are verified.
    """
    name = Path(path).name
    options = tf.io.TFRecordOptions(compression_type="GZIP" if path.endswith(".gz") else "")
    # The record iterator streams from C++; iterating a tf.data.TFRecordDataset eagerly costs
    # about 100 times more per record.
    records = tf.compat.v1.io.tf_record_iterator(path, options)
    number = 0
    while True:
        origin = f"{name}:record {number + 1}"
        try:
            record = next(records, None)
        except tf.errors.OpError as error:
            yield _unreadable(origin, split, error.message)
            return
        if record is None:
            return
        number += 1
        yield _example_pair(record, origin, split, source_feature, target_feature)


def read_input(file: InputFile, cfg: DataConfig) -> Iterator[RawPair]:
    """The rows of one input file (or chunk of a text, TSV or JSONL file) in `cfg.format`."""
    if cfg.format == "text":
        paths = (file.path, file.target_path, file.split)
        offsets = (file.offset, file.target_offset)
        return read_aligned_files(paths, offsets, file.first_line, file.max_lines)
    if cfg.format == "tsv":
        return read_tsv(file, cfg.source_column, cfg.target_column)
    if cfg.format == "csv":
        return read_csv(file.path, cfg.source_column, cfg.target_column, file.split)
    if cfg.format == "jsonl":
        return read_jsonl(file, cfg.source_field, cfg.target_field)
    if cfg.format == "tfrecord":
        return read_tfrecord(file.path, cfg.source_feature, cfg.target_feature, file.split)
    raise ValueError(f"data.format={cfg.format} is not read from files")


def matching_files(key: str, pattern: str) -> list[str]:
    """The files a path or glob names, sorted; FileNotFoundError names the config key."""
    if not pattern:
        raise FileNotFoundError(f"data.{key}: no file given")
    if os.path.isfile(pattern):  # a plain path, even one with glob characters in its name
        return [pattern]
    files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not files:
        if any(c in pattern for c in "*?["):
            raise FileNotFoundError(f"data.{key}: no file matches {pattern!r}")
        raise FileNotFoundError(f"data.{key}: file {pattern!r} not found")
    return files


def input_files(cfg: DataConfig) -> list[InputFile]:
    """Every file the config names, globs expanded in sorted order; none for `builtin`.

    Raises FileNotFoundError (naming the key) for a pattern without files, ValueError when the
    source and target globs of the text format match different numbers of files.
    """
    if cfg.format == "builtin":
        return []
    files = []
    for split in SPLIT_NAMES:
        prefix = f"{split}_" if split else ""
        if cfg.format != "text":
            pattern = getattr(cfg, f"{prefix}path")
            if pattern or not split:
                files += [InputFile(p, split) for p in matching_files(f"{prefix}path", pattern)]
            continue
        keys = (f"{prefix}source_path", f"{prefix}target_path")
        patterns = [getattr(cfg, key) for key in keys]
        if split and not any(patterns):
            continue
        sources, targets = (matching_files(k, p) for k, p in zip(keys, patterns))
        if len(sources) != len(targets):
            raise ValueError(
                f"data.{keys[0]} matches {len(sources)} files but data.{keys[1]} matches "
                f"{len(targets)}: source and target files are paired in sorted order"
            )
        files += [InputFile(s, split, t) for s, t in zip(sources, targets)]
    return files
