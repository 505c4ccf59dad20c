"""File chunks: reading a file chunk by chunk gives exactly the rows of reading it whole."""

import gzip

import pytest

from components.chunks import file_chunks, line_starts
from components.sources import InputFile, read_input
from pipeline.config import DataConfig


def test_line_starts_are_the_offsets_of_every_nth_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"a\nbb\n\nccc\ndd\n")  # lines start at 0, 2, 5, 6, 10
    assert line_starts(str(path), 1) == [2, 5, 6, 10]
    assert line_starts(str(path), 2) == [5, 10]
    assert line_starts(str(path), 5) == []  # line 5 would start at the end of the file
    path.write_bytes(b"a\nbb")  # no final line break
    assert line_starts(str(path), 1) == [2]


def _read(chunks, cfg):
    return [pair for chunk in chunks for pair in read_input(chunk, cfg)]


@pytest.mark.parametrize("source_lines,target_lines", [(23, 23), (23, 17), (17, 23), (20, 20)])
def test_aligned_text_chunks_read_the_same_rows(tmp_path, source_lines, target_lines):
    (tmp_path / "a.en").write_bytes(b"".join(b"en %d\r\n" % i for i in range(source_lines)))
    (tmp_path / "a.de").write_bytes(b"".join(b"de %d\n" % i for i in range(target_lines)))
    file = InputFile(str(tmp_path / "a.en"), "test", str(tmp_path / "a.de"))
    cfg = DataConfig(format="text")
    chunks = file_chunks(file, "text", lines_per_chunk=5)
    assert len(chunks) == (source_lines + 4) // 5
    assert [c.first_line for c in chunks] == [5 * i for i in range(len(chunks))]
    rows = _read(chunks, cfg)
    assert rows == _read([file], cfg)
    assert len(rows) == max(source_lines, target_lines)
    assert rows[-1].origin == f"a.en:{len(rows)}" and rows[0].split == "test"


def test_tsv_and_jsonl_chunks_keep_origins_and_strip_the_bom_once(tmp_path):
    (tmp_path / "a.tsv").write_bytes(
        b"\xef\xbb\xbf" + b"".join(b"s%d\tt%d\n" % (i, i) for i in range(12))
    )
    cfg = DataConfig(format="tsv")
    chunks = file_chunks(InputFile(str(tmp_path / "a.tsv")), "tsv", lines_per_chunk=4)
    rows = _read(chunks, cfg)
    assert len(chunks) == 3 and rows == _read([InputFile(str(tmp_path / "a.tsv"))], cfg)
    assert [(r.source, r.origin) for r in rows[:1] + rows[-1:]] == [
        (b"s0", "a.tsv:1"),
        (b"s11", "a.tsv:12"),
    ]
    (tmp_path / "a.jsonl").write_text(
        "".join(f'{{"source": "s{i}", "target": "t"}}\n' for i in range(9))
    )
    jsonl = DataConfig(format="jsonl")
    chunks = file_chunks(InputFile(str(tmp_path / "a.jsonl")), "jsonl", lines_per_chunk=4)
    assert len(chunks) == 3
    assert _read(chunks, jsonl) == _read([InputFile(str(tmp_path / "a.jsonl"))], jsonl)


def test_gzip_csv_and_tfrecord_files_stay_whole(tmp_path):
    (tmp_path / "a.tsv.gz").write_bytes(gzip.compress(b"a\tb\n" * 10))
    (tmp_path / "a.csv").write_bytes(b'a,"b\nc"\n' * 10)
    for name, file_format in (("a.tsv.gz", "tsv"), ("a.csv", "csv"), ("a.csv", "tfrecord")):
        file = InputFile(str(tmp_path / name))
        assert file_chunks(file, file_format, lines_per_chunk=2) == [file]
