"""Input format readers: the exact rows, origins and malformed rows each file yields."""

import gzip
import re

import pytest
import tensorflow as tf

from components.records import bytes_feature, int_feature, text_example
from components.sources import (
    MALFORMED,
    InputFile,
    RawPair,
    input_files,
    read_aligned_files,
    read_csv,
    read_input,
    read_jsonl,
    read_tfrecord,
    read_tsv,
)
from pipeline.config import DataConfig

# Anki/Tatoeba layout: english<TAB>other<TAB>attribution, with a byte order mark before line 1.
ANKI = (
    b"\xef\xbb\xbfGo.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM)\n"
    b"Hi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM)\r\n"
    b"lonely\n"  # no second column
    b"\n"  # blank line: no second column either
    b'"Run!" he said.\tBad \xff byte\tx\n'  # quotes are plain text; bytes pass through as bytes
    b"Stop.\t\tx\n"  # an empty target is parsed; the ingest stage rejects it as empty_target
)
ANKI_ROWS = [
    (b"Go.", b"Va !", 1, ""),
    (b"Hi.", b"Salut !", 2, ""),
    (b"lonely", b"", 3, MALFORMED),
    (b"", b"", 4, MALFORMED),
    (b'"Run!" he said.', b"Bad \xff byte", 5, ""),
    (b"Stop.", b"", 6, ""),
]


def _rows(pairs) -> list[tuple]:
    return [(p.source, p.target, p.origin, p.problem) for p in pairs]


def _expected(name: str, rows: list[tuple], unit: str = "") -> list[tuple]:
    """(source, target, origin, problem) rows; `n` in each row is a line or record number."""
    return [(s, t, f"{name}:{unit}{n}", problem) for s, t, n, problem in rows]


def _malformed(pairs: list[RawPair]) -> int:
    return sum(p.problem == MALFORMED for p in pairs)


def _example(**features) -> bytes:
    feature = {
        k: int_feature(v) if isinstance(v, list) else bytes_feature(v) for k, v in features.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_tfrecord(path, records: list[bytes], compression: str = "") -> str:
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type=compression)) as w:
        for record in records:
            w.write(record)
    return str(path)


def test_tsv_default_columns_read_anki_files(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_bytes(ANKI)
    pairs = list(read_tsv(str(path)))
    assert _rows(pairs) == _expected("fra.txt", ANKI_ROWS)
    assert _malformed(pairs) == 2
    assert pairs[2].detail == "no column 1: the row has 1"


def test_tsv_chosen_columns_and_split(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_bytes(ANKI)
    pairs = list(read_tsv(str(path), source_column=1, target_column=0, split="test"))
    assert [(p.source, p.target) for p in pairs[:2]] == [(b"Va !", b"Go."), (b"Salut !", b"Hi.")]
    assert {p.split for p in pairs} == {"test"}
    pairs = list(read_tsv(str(path), source_column=2, target_column=0))
    assert pairs[1].source == b"CC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM)"
    assert _malformed(pairs) == 2


def test_csv_quoted_fields_and_multiline_records(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(
        b"Hello,Hallo\n"
        b'"Yes, really","Ja, wirklich"\n'
        b'"Two\nlines","Zwei ""Zeilen"""\n'  # one record on lines 3-4
        b"only one field\n"
        b"\n"
        b"bad \xff,ok\n"
        b"a,b,c\r\n"
    )
    pairs = list(read_csv(str(path)))
    assert _rows(pairs) == _expected(
        "pairs.csv",
        [
            (b"Hello", b"Hallo", 1, ""),
            (b"Yes, really", b"Ja, wirklich", 2, ""),
            (b"Two\nlines", b'Zwei "Zeilen"', 3, ""),
            (b"only one field", b"", 5, MALFORMED),
            (b"", b"", 6, MALFORMED),
            (b"bad \xff", b"ok", 7, ""),
            (b"a", b"b", 8, ""),
        ],
    )
    assert _malformed(pairs) == 2
    assert _rows(read_csv(str(path), source_column=2, target_column=0))[-1] == (
        b"c",
        b"a",
        "pairs.csv:8",
        "",
    )


def test_jsonl_fields_and_malformed_lines(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [
        b'{"source": "Hello", "target": "Hallo", "id": 1}',
        b'{"source": "Bad \xff", "target": "ok"}',
        b'{"source": "Hi"',  # invalid JSON
        b'{"source": "Hi"}',  # no target
        b'{"source": 3, "target": "drei"}',  # not a string
        b'{"source": null, "target": "x"}',  # not a string
        b'["Hello", "Hallo"]',  # not an object
        b"",  # blank line: invalid JSON
        b'{"source": "\\ud800", "target": "x"}',  # a lone surrogate is not text
        b'{"source": "caf\\u00e9", "target": "Caf\xc3\xa9"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    pairs = list(read_jsonl(str(path)))
    assert _rows(pairs) == _expected(
        "pairs.jsonl",
        [
            (b"Hello", b"Hallo", 1, ""),
            (b"Bad \xff", b"ok", 2, ""),
            (lines[2], b"", 3, MALFORMED),
            (b"Hi", b"", 4, MALFORMED),
            (b"", b"drei", 5, MALFORMED),
            (b"", b"x", 6, MALFORMED),
            (lines[6], b"", 7, MALFORMED),
            (b"", b"", 8, MALFORMED),
            (b"\\ud800", b"x", 9, "undecodable"),
            ("café".encode(), "Café".encode(), 10, ""),
        ],
    )
    assert _malformed(pairs) == 6
    assert [p.detail for p in pairs[3:5]] == ["no field 'target'", "'source' is not a string"]


def test_jsonl_chosen_and_nested_fields(tmp_path):
    path = tmp_path / "wmt.jsonl"
    path.write_text(
        '{"translation": {"en": "Hello", "de": "Hallo"}}\n'
        '{"translation": {"en": "Hi"}}\n'
        '{"translation.en": "Top", "translation": {"de": "Oben"}}\n'
    )
    pairs = list(read_jsonl(str(path), "translation.en", "translation.de"))
    assert _rows(pairs) == _expected(
        "wmt.jsonl",
        [(b"Hello", b"Hallo", 1, ""), (b"Hi", b"", 2, MALFORMED), (b"Top", b"Oben", 3, "")],
    )


def test_tfrecord_examples_and_malformed_records(tmp_path):
    records = [
        text_example("Hello", "Hallo"),
        _example(source="Hi"),  # no target feature
        _example(source="Eins", target=[1]),  # an int64 feature, not bytes
        b"\xff\xff\xff",  # not an Example
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a", b"b"])),
                    "target": bytes_feature("zwei"),
                }
            )
        ).SerializeToString(),  # two source values
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff"])),
                    "target": bytes_feature("x"),
                }
            )
        ).SerializeToString(),
    ]
    path = _write_tfrecord(tmp_path / "pairs.tfrecord", records)
    pairs = list(read_tfrecord(path))
    assert _rows(pairs) == _expected(
        "pairs.tfrecord",
        [
            (b"Hello", b"Hallo", 1, ""),
            (b"Hi", b"", 2, MALFORMED),
            (b"Eins", b"", 3, MALFORMED),
            (b"", b"", 4, MALFORMED),
            (b"", b"zwei", 5, MALFORMED),
            (b"\xff", b"x", 6, ""),
        ],
        unit="record ",
    )
    assert [pair.origin for pair in pairs][:2] == [
        "pairs.tfrecord:record 1",
        "pairs.tfrecord:record 2",
    ]
    assert _malformed(pairs) == 4
    assert [p.detail for p in pairs[1:5]] == [
        "no bytes feature 'target'",
        "no bytes feature 'target'",
        "not a tf.train.Example",
        "'source' has 2 values, not 1",
    ]


def test_truncated_tfrecord_ends_with_one_malformed_row(tmp_path):
    path = _write_tfrecord(tmp_path / "cut.tfrecord", [text_example("a", "b")] * 3)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-5])
    pairs = list(read_tfrecord(path))
    assert _rows(pairs) == _expected(
        "cut.tfrecord",
        [(b"a", b"b", 1, ""), (b"a", b"b", 2, ""), (b"", b"", 3, MALFORMED)],
        unit="record ",
    )


def test_gzip_files_by_name(tmp_path):
    tsv = tmp_path / "fra.txt.gz"
    tsv.write_bytes(gzip.compress(ANKI))
    pairs = list(read_tsv(str(tsv)))
    assert _rows(pairs) == _expected("fra.txt.gz", ANKI_ROWS)
    assert _malformed(pairs) == 2

    records = [_example(en="Hello", de="Hallo"), _example(en="Hi")]
    path = _write_tfrecord(tmp_path / "pairs.tfrecord.gz", records, "GZIP")
    assert _rows(read_tfrecord(path, "en", "de")) == _expected(
        "pairs.tfrecord.gz",
        [(b"Hello", b"Hallo", 1, ""), (b"Hi", b"", 2, MALFORMED)],
        unit="record ",
    )

    # Text format: a gzip source file line-aligned with a plain target file.
    (tmp_path / "a.en.gz").write_bytes(gzip.compress(b"one\ntwo\n"))
    (tmp_path / "a.de").write_bytes(b"eins\nzwei\n")
    aligned = read_aligned_files((str(tmp_path / "a.en.gz"), str(tmp_path / "a.de"), ""))
    assert _rows(aligned) == [
        (b"one", b"eins", "a.en.gz:1", ""),
        (b"two", b"zwei", "a.en.gz:2", ""),
    ]


def test_truncated_gzip_ends_with_one_malformed_row(tmp_path):
    path = tmp_path / "cut.tsv.gz"
    path.write_bytes(gzip.compress(b"a\tb\nc\td\n")[:-8])  # the gzip trailer is missing
    pairs = list(read_tsv(str(path)))
    assert _rows(pairs) == [
        (b"a", b"b", "cut.tsv.gz:1", ""),
        (b"c", b"d", "cut.tsv.gz:2", ""),
        (b"", b"", "cut.tsv.gz:3", MALFORMED),
    ]
    assert pairs[-1].detail.startswith("file unreadable from here")


def test_glob_over_two_shards_reads_them_in_sorted_order(tmp_path):
    (tmp_path / "part-00001.tsv").write_bytes(b"three\tdrei\nfour\n")
    (tmp_path / "part-00000.tsv").write_bytes(b"one\teins\ntwo\tzwei\n")
    (tmp_path / "other.tsv").write_bytes(b"not\tread\n")
    cfg = DataConfig(format="tsv", path=str(tmp_path / "part-*.tsv"))
    files = input_files(cfg)
    assert files == [InputFile(str(tmp_path / f"part-0000{i}.tsv")) for i in (0, 1)]
    pairs = [pair for file in files for pair in read_input(file, cfg)]
    assert _rows(pairs) == [
        (b"one", b"eins", "part-00000.tsv:1", ""),
        (b"two", b"zwei", "part-00000.tsv:2", ""),
        (b"three", b"drei", "part-00001.tsv:1", ""),
        (b"four", b"", "part-00001.tsv:2", MALFORMED),
    ]
    assert _malformed(pairs) == 1


def test_input_files_given_splits_and_text_globs(tmp_path):
    for name in ("src-1.en", "src-0.en", "tgt-0.de", "tgt-1.de", "val.jsonl", "test.jsonl.gz"):
        (tmp_path / name).write_bytes(b"")
    cfg = DataConfig(
        format="jsonl",
        path=str(tmp_path / "val.jsonl"),
        validation_path=str(tmp_path / "val.jsonl"),
        test_path=str(tmp_path / "test.*"),
    )
    assert [(f.path, f.split) for f in input_files(cfg)] == [
        (str(tmp_path / "val.jsonl"), ""),
        (str(tmp_path / "val.jsonl"), "validation"),
        (str(tmp_path / "test.jsonl.gz"), "test"),
    ]
    cfg = DataConfig(
        format="text", source_path=str(tmp_path / "src-*"), target_path=str(tmp_path / "tgt-*")
    )
    assert input_files(cfg) == [
        InputFile(str(tmp_path / f"src-{i}.en"), "", str(tmp_path / f"tgt-{i}.de")) for i in (0, 1)
    ]
    assert input_files(DataConfig(format="builtin")) == []


def test_input_files_name_the_key_and_pattern(tmp_path):
    (tmp_path / "a.en").write_bytes(b"")
    pattern = str(tmp_path / "missing-*.tsv")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"data.path: no file matches '{pattern}'")
    ):
        input_files(DataConfig(format="tsv", path=pattern))
    with pytest.raises(FileNotFoundError, match="data.test_path: file 'nope.tsv' not found"):
        input_files(DataConfig(format="tsv", path=str(tmp_path / "a.en"), test_path="nope.tsv"))
    with pytest.raises(FileNotFoundError, match="data.path: no file given"):
        input_files(DataConfig(format="jsonl"))
    text = DataConfig(format="text", source_path=str(tmp_path / "a.*"), target_path="b*")
    with pytest.raises(FileNotFoundError, match="data.target_path: no file matches 'b\\*'"):
        input_files(text)
    (tmp_path / "b.de").write_bytes(b"")
    (tmp_path / "b2.de").write_bytes(b"")
    text.target_path = str(tmp_path / "b*")
    with pytest.raises(ValueError, match="source_path matches 1 files but data.target_path"):
        input_files(text)
