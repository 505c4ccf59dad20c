"""Ingest: exact splits, counts and rejection reasons on small known inputs."""

import dataclasses
import gzip
import json
import re
import unicodedata
from pathlib import Path

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from components import chunks, sorted_runs
from components.ingest import (
    REJECTED,
    REJECTED_FILE,
    EmptySplitError,
    RawPair,
    TooManyRejectedError,
    ValidatePairs,
    ingest,
    normalize_text,
    split_of,
    validate_pair,
)
from components.records import parse_text_example, shard_paths
from pipeline.config import DataConfig, SplitConfig, load_config
from tests.conftest import BEAM_ARGS

GOOD = [(f"sentence number {i} here .", f"satz nummer {i} hier .") for i in range(40)]


def _write_lines(path, lines: list[bytes]) -> str:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return str(path)


def _read_split(directory, split):
    files = [str(p) for p in shard_paths(directory, split)]
    return [parse_text_example(r.numpy()) for r in tf.data.TFRecordDataset(files)] if files else []


def _read_rejected(directory) -> list[dict]:
    return [
        json.loads(line)
        for line in next(directory.glob("rejected*.jsonl")).read_text().splitlines()
    ]


def _assert_hash_splits(out, result, pairs, validation, test) -> dict:
    """Each split holds exactly the pairs whose source hashes into it; returns them."""
    expected = {"train": [], "validation": [], "test": []}
    for source, target in pairs:
        expected[split_of(source, validation, test)].append((source, target))
    for split, rows in expected.items():
        assert sorted(_read_split(out, split)) == sorted(rows)
        assert result.counts[split] == len(rows)
    return expected


def test_validate_pair_reasons():
    assert validate_pair(RawPair(b"\xff\xfe", b"ok", "f:1"), "NFC", 5) == "undecodable"
    assert validate_pair(RawPair("  ", "ok", "f:1"), "NFC", 5) == "empty_source"
    assert validate_pair(RawPair("ok", "\t", "f:1"), "NFC", 5) == "empty_target"
    assert validate_pair(RawPair("a b c d e f", "ok", "f:1"), "NFC", 5) == "too_long"
    assert validate_pair(RawPair(" a  b ", "c\td ", "f:1"), "NFC", 5) == ("a b", "c d")
    # A problem found while reading comes first.
    assert validate_pair(RawPair("a", "b", "f:1", problem="malformed"), "NFC", 5) == "malformed"


def test_normalize_composes_accents():
    decomposed = unicodedata.normalize("NFD", "Mädchen  grünen")
    assert normalize_text(decomposed, "NFC") == "Mädchen grünen"
    assert len(normalize_text(decomposed, "NFC")) == len("Mädchen grünen")


def test_split_is_a_pure_function_of_the_source():
    assert split_of("The dog runs.", 0.05, 0.05) == split_of("The dog runs.", 0.05, 0.05)
    splits = [split_of(f"sentence {i}", 0.1, 0.2) for i in range(5000)]
    # Hashing spreads sources close to the configured fractions.
    assert abs(splits.count("test") / 5000 - 0.2) < 0.03
    assert abs(splits.count("validation") / 5000 - 0.1) < 0.03
    assert split_of("anything", 0.0, 0.0) == "train"


def test_validate_dofn_routes_rejects():
    rows = [
        RawPair(b"a b", b"c d", "f:1"),
        RawPair(b"", b"x", "f:2"),
        RawPair(b"\xc3", b"y", "f:3"),
    ]
    with TestPipeline(argv=BEAM_ARGS) as p:
        out = (
            p
            | beam.Create(rows)
            | beam.ParDo(ValidatePairs(DataConfig(max_words=10))).with_outputs(
                REJECTED, main="kept"
            )
        )
        assert_that(out.kept, equal_to([(("", "a b", "c d"), "f:1")]), label="kept")
        reasons = out[REJECTED] | beam.Map(lambda r: (r["reason"], r["origin"]))
        assert_that(
            reasons, equal_to([("empty_source", "f:2"), ("undecodable", "f:3")]), label="rejected"
        )


def test_ingest_text_files_exact_counts(tmp_path):
    sources = [s.encode() for s, _ in GOOD]
    targets = [t.encode() for _, t in GOOD]
    # 2 exact duplicates, 1 empty source, 1 empty target, 1 undecodable, 1 too long.
    sources += [sources[0], sources[1], b"", b"lonely", b"bad \xff byte", b"w " * 30]
    targets += [targets[0], targets[1], b"leer", b"", b"ok", b"lang"]
    cfg = DataConfig(
        format="text",
        source_path=_write_lines(tmp_path / "src.txt", sources),
        target_path=_write_lines(tmp_path / "tgt.txt", targets),
        max_words=20,
        split=SplitConfig(validation=0.2, test=0.2),
    )
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)

    expected = _assert_hash_splits(out, result, GOOD, 0.2, 0.2)
    assert result.rejected == {
        "duplicate": 2,
        "empty_source": 1,
        "empty_target": 1,
        "undecodable": 1,
        "too_long": 1,
    }
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["read"] == 46 and stats["kept"] == 40 and stats["rejected_total"] == 6
    tags = {
        value.tag: value
        for path in (out / "logs").glob("events.out.tfevents.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    table = tf.make_ndarray(tags["statistics"].tensor).item().decode()
    assert "| duplicate | 2 |" in table and "| total | 6 of 46 read |" in table
    assert {"words/train/source", "words/test/target"} <= set(tags)
    # Every kept pair has 5 words a side: one histogram bucket, [5, 6), holding all train rows.
    assert tf.make_ndarray(tags["words/train/source"].tensor).tolist() == [
        [5.0, 6.0, len(expected["train"])]
    ]
    assert stats["words"]["train"]["source"]["max"] == 5
    # Every kept pair has 5 words a side: ratio 1.0 everywhere.
    assert stats["length_ratio"]["train"] == {"p5": 1.0, "p50": 1.0, "p95": 1.0, "mean": 1.0}
    train_sources = [s for s, _ in expected["train"]]
    assert stats["characters"]["train"]["source"] == {
        "distinct": len(set("".join(train_sources))),
        "non_ascii_share": 0.0,
        "top_non_ascii": [],
    }
    rejected = [
        json.loads(line) for line in next(out.glob("rejected*.jsonl")).read_text().splitlines()
    ]
    assert sorted(r["origin"] for r in rejected if r["reason"] == "duplicate") == [
        "src.txt:41",
        "src.txt:42",
    ]
    assert [r["source"] for r in rejected if r["reason"] == "undecodable"] == ["bad \\xff byte"]


def test_ingest_is_byte_identical_across_runs(tmp_path):
    cfg = DataConfig(format="builtin", builtin_pairs=300, num_shards=3)
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / name
        out.mkdir()
        ingest(cfg, out=out, seed=7, beam_args=BEAM_ARGS)
        outputs.append({p.name: p.read_bytes() for p in out.glob("*.tfrecord")})
    assert outputs[0] == outputs[1]
    assert sum(len(_read_split(tmp_path / "a", s)) for s in ("train", "validation", "test")) == 300


def _write_pair_files(directory, name: str, rows: list[tuple[str, str]]) -> tuple[str, str]:
    return (
        _write_lines(directory / f"{name}.en", [s.encode() for s, _ in rows]),
        _write_lines(directory / f"{name}.de", [t.encode() for _, t in rows]),
    )


@pytest.mark.parametrize("reject_source_in_other_split", [True, False])
def test_given_test_files_are_the_test_split(tmp_path, reject_source_in_other_split):
    main = [(f"main {i} .", f"haupt {i} .") for i in range(30)]
    given = [(f"given {i} .", f"gegeben {i} .") for i in range(5)] + [("main 0 .", "haupt 0 .")]
    train_files = _write_pair_files(tmp_path, "train", main)
    test_files = _write_pair_files(tmp_path, "test", given)
    cfg = DataConfig(
        format="text",
        source_path=train_files[0],
        target_path=train_files[1],
        test_source_path=test_files[0],
        test_target_path=test_files[1],
        split=SplitConfig(validation=0.2, test=0.5),
        reject_source_in_other_split=reject_source_in_other_split,
    )
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)
    # The test file is the whole test split; the main file's rows go to train or validation
    # only (data.split.test does not apply). "main 0 ." hashes to train.
    assert sorted(_read_split(out, "test")) == sorted(given)
    expected_validation = [p for p in main if split_of(p[0], 0.2, 0.0) == "validation"]
    assert ("main 0 .", "haupt 0 .") not in expected_validation
    assert sorted(_read_split(out, "validation")) == sorted(expected_validation)
    if not reject_source_in_other_split:  # the old behaviour: the pair is in train and test
        assert result.counts["train"] == 30 - len(expected_validation)
        assert result.rejected == {}
        return
    # Its copy in the main file would leak the test sentence into training.
    assert result.counts["train"] == 30 - len(expected_validation) - 1
    assert result.rejected == {"source_in_other_split": 1}
    assert _read_rejected(out) == [
        {
            "reason": "source_in_other_split",
            "origin": "train.en:1",
            "source": "main 0 .",
            "target": "haupt 0 .",
            "detail": "the source sentence is also in the given test file",
        }
    ]


def test_a_source_in_several_splits_stays_in_the_highest(tmp_path):
    """Test file over validation file over the main input, compared after normalization."""
    cafe = unicodedata.normalize("NFD", "Café time .")  # the main file's decomposed form
    fillers = [(f"row {i} .", f"zeile {i} .") for i in range(5)]
    main = [
        ("A dog runs .", "Ein Hund rennt ."),  # also in test (with other spacing): rejected
        ("A cat sleeps .", "Eine Katze schläft ."),  # also in validation: rejected
        ("A bird sings .", "Ein Vogel singt ."),  # also in validation and test: rejected
        (cafe, "Kaffeezeit ."),  # also in test, there composed: rejected
        ("A fish swims .", "Ein Fisch schwimmt ."),  # its test row is invalid: kept
        *fillers,
    ]
    validation = [
        ("A cat sleeps .", "Die Katze schläft ."),
        ("A bird sings .", "Ein Vogel singt ."),  # also in test: rejected
        ("val only .", "nur val ."),
    ]
    test = [
        ("A  dog runs .", "Ein Hund läuft ."),
        ("A bird sings .", "Ein Vogel singt ."),
        ("Café time .", "Kaffeezeit ."),
        ("A fish swims .", ""),  # empty_target
    ]
    paths = {n: _write_pair_files(tmp_path, n, r) for n, r in (("m", main), ("v", validation))}
    paths["t"] = _write_pair_files(tmp_path, "t", test)
    cfg = DataConfig(
        format="text",
        source_path=paths["m"][0],
        target_path=paths["m"][1],
        validation_source_path=paths["v"][0],
        validation_target_path=paths["v"][1],
        test_source_path=paths["t"][0],
        test_target_path=paths["t"][1],
    )
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)
    assert sorted(_read_split(out, "train")) == sorted([main[4], *fillers])
    assert sorted(_read_split(out, "validation")) == sorted([validation[0], validation[2]])
    assert sorted(_read_split(out, "test")) == sorted(
        [("A dog runs .", "Ein Hund läuft ."), test[1], test[2]]
    )
    assert result.rejected == {"source_in_other_split": 5, "empty_target": 1}
    in_test, in_validation = (
        ("source_in_other_split", f"the source sentence is also in the given {split} file")
        for split in ("test", "validation")
    )
    assert [(r["origin"], r["reason"], r.get("detail")) for r in _read_rejected(out)] == [
        ("m.en:1", *in_test),
        ("m.en:2", *in_validation),
        ("m.en:3", *in_test),
        ("m.en:4", *in_test),
        ("t.en:4", "empty_target", None),
        ("v.en:2", *in_test),
    ]
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["files"] == {
        "m.en": {"read": 10, "kept": 6, "rejected": 4},
        "t.en": {"read": 4, "kept": 3, "rejected": 1},
        "v.en": {"read": 3, "kept": 2, "rejected": 1},
    }
    assert stats["read"] == 17 and stats["kept"] == 11 and stats["rejected_total"] == 6


def test_ingest_tsv_anki_file_exact_counts(tmp_path):
    attribution = "CC-BY 2.0 (France) Attribution: tatoeba.org #{} (CM)"
    lines = [f"{s}\t{t}\t{attribution.format(i)}".encode() for i, (s, t) in enumerate(GOOD)]
    # 2 malformed (no second column, blank line), 1 duplicate pair, 1 undecodable.
    lines += [b"only english", b"", f"{GOOD[3][0]}\t{GOOD[3][1]}\tother".encode(), b"a \xff\tb\tc"]
    path = _write_lines(tmp_path / "fra.txt", lines)
    # Two keys (plus split fractions) are all a TSV corpus needs.
    overrides = ["data.format=tsv", f"data.path={path}", "data.split.validation=0.2"]
    cfg = load_config(None, [*overrides, "data.split.test=0.2"]).data
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)

    _assert_hash_splits(out, result, GOOD, 0.2, 0.2)
    assert result.rejected == {"malformed": 2, "duplicate": 1, "undecodable": 1}
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["read"] == 44 and stats["kept"] == 40
    assert stats["files"] == {"fra.txt": {"read": 44, "kept": 40, "rejected": 4}}
    rejected = sorted((r["origin"], r["reason"], r.get("detail")) for r in _read_rejected(out))
    assert rejected == [
        ("fra.txt:41", "malformed", "no column 1: the row has 1"),
        ("fra.txt:42", "malformed", "no column 1: the row has 1"),
        ("fra.txt:43", "duplicate", None),
        ("fra.txt:44", "undecodable", None),
    ]


def test_ingest_jsonl_with_given_test_file(tmp_path):
    main = [(f"main {i} .", f"haupt {i} .") for i in range(30)]
    given = [(f"given {i} .", f"gegeben {i} .") for i in range(5)] + [("main 0 .", "haupt 0 .")]
    main_lines = [json.dumps({"en": s, "de": t}) for s, t in main]
    main_lines += ['{"en": "no target"}', "not json"]
    test_lines = [json.dumps({"en": s, "de": t, "id": i}) for i, (s, t) in enumerate(given)]
    test_lines += ['{"en": "number", "de": 7}']
    (tmp_path / "train.jsonl").write_text("\n".join(main_lines) + "\n")
    (tmp_path / "test.jsonl.gz").write_bytes(gzip.compress(("\n".join(test_lines) + "\n").encode()))
    cfg = DataConfig(
        format="jsonl",
        path=str(tmp_path / "train.jsonl"),
        test_path=str(tmp_path / "test.jsonl.gz"),
        source_field="en",
        target_field="de",
        split=SplitConfig(validation=0.2, test=0.5),
    )
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)
    # The test file is the whole test split; data.split.test does not apply to the main file.
    assert sorted(_read_split(out, "test")) == sorted(given)
    expected_validation = [p for p in main if split_of(p[0], 0.2, 0.0) == "validation"]
    assert sorted(_read_split(out, "validation")) == sorted(expected_validation)
    # "main 0 ." (in train by its hash) is also in the test file: only the test split keeps it.
    kept_main = set(main) - set(expected_validation) - {("main 0 .", "haupt 0 .")}
    assert sorted(_read_split(out, "train")) == sorted(kept_main)
    assert result.counts == {
        "train": 29 - len(expected_validation),
        "validation": len(expected_validation),
        "test": 6,
    }
    assert result.rejected == {"malformed": 3, "source_in_other_split": 1}
    assert [(r["origin"], r["reason"]) for r in _read_rejected(out)] == [
        ("test.jsonl.gz:7", "malformed"),
        ("train.jsonl:1", "source_in_other_split"),
        ("train.jsonl:31", "malformed"),
        ("train.jsonl:32", "malformed"),
    ]
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["files"] == {
        "test.jsonl.gz": {"read": 7, "kept": 6, "rejected": 1},
        "train.jsonl": {"read": 32, "kept": 29, "rejected": 3},
    }


def test_ingest_stops_before_beam_when_a_glob_matches_nothing(tmp_path):
    cfg = DataConfig(format="csv", path=str(tmp_path / "shard-*.csv"))
    with pytest.raises(FileNotFoundError, match="data.path: no file matches"):
        ingest(cfg, out=tmp_path, seed=0, beam_args=BEAM_ARGS)


def test_new_rejection_reasons():
    assert validate_pair(RawPair("a\x07b", "ok", "f:1"), "NFC", 5) == "control_characters"
    assert validate_pair(RawPair("a b c d e f g h i j", "x", "f:1"), "NFC", 20) == "length_ratio"
    assert validate_pair(RawPair("a b c", "x", "f:1"), "NFC", 20, max_length_ratio=3.0) == (
        "a b c",
        "x",
    )
    assert validate_pair(RawPair("Hallo.", "Hallo.", "f:1"), "NFC", 5) == "identical"
    assert validate_pair(RawPair("Hallo.", "Hallo.", "f:1"), "NFC", 5, reject_identical=False) == (
        "Hallo.",
        "Hallo.",
    )


def test_too_many_rejected_rows_fail_the_stage(tmp_path):
    rows = [(b"good one", b"gut eins"), (b"", b"x"), (b"", b"y"), (b"", b"z")]
    cfg = DataConfig(
        format="text",
        source_path=_write_lines(tmp_path / "s.txt", [s for s, _ in rows]),
        target_path=_write_lines(tmp_path / "t.txt", [t for _, t in rows]),
        max_rejected_fraction=0.5,
    )
    out = tmp_path / "out"
    out.mkdir()
    # The message names the first rows and where all of them are (the failed stage's output).
    first = "first: s.txt:2 (empty_source), s.txt:3 (empty_source), s.txt:4 (empty_source)"
    where = f"all of them in {out}/{REJECTED_FILE}"
    with pytest.raises(
        TooManyRejectedError,
        match=r"3 of 4 rows rejected .*" + re.escape(first) + "; " + re.escape(where),
    ):
        ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)
    assert len((out / REJECTED_FILE).read_text().splitlines()) == 3


def _tsv(path, rows: list[tuple[str, str]]) -> str:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    return str(path)


def test_an_empty_input_fails_the_stage(tmp_path):
    cfg = DataConfig(format="tsv", path=_tsv(tmp_path / "empty.tsv", []))
    message = f"no rows read from data.path {tmp_path}/empty.tsv: the input is empty"
    with pytest.raises(EmptySplitError, match=re.escape(message)):
        ingest(cfg, out=tmp_path, seed=0, beam_args=BEAM_ARGS)


def test_every_row_rejected_fails_the_stage_even_without_a_limit(tmp_path):
    cfg = DataConfig(
        format="tsv",
        path=_tsv(tmp_path / "same.tsv", [("Hallo.", "Hallo."), ("Ja.", "Ja.")]),
        max_rejected_fraction=1.0,
    )
    message = (
        "ingest kept no train and no validation and no test rows (train 0, validation 0, test 0; "
        f"2 read, 2 rejected: identical: 2) from data.path {tmp_path}/same.tsv."
    )
    with pytest.raises(EmptySplitError, match=re.escape(message)):
        ingest(cfg, out=tmp_path, seed=0, beam_args=BEAM_ARGS)


def test_an_empty_split_fails_the_stage(tmp_path):
    # Every main row's source is in the given test file, which keeps it: no train rows remain.
    test_rows = GOOD[:3]
    cfg = DataConfig(
        format="tsv",
        path=_tsv(tmp_path / "main.tsv", test_rows),
        validation_path=_tsv(tmp_path / "val.tsv", GOOD[3:6]),
        test_path=_tsv(tmp_path / "test.tsv", test_rows),
    )
    message = (
        "ingest kept no train rows (train 0, validation 3, test 3; 9 read, 3 rejected: "
        f"source_in_other_split: 3) from data.path {tmp_path}/main.tsv, data.validation_path "
        f"{tmp_path}/val.tsv, data.test_path {tmp_path}/test.tsv."
    )
    with pytest.raises(EmptySplitError, match=re.escape(message)):
        ingest(cfg, out=tmp_path, seed=0, beam_args=BEAM_ARGS)
    # A hashed split with no share is empty too, and tokenize could not read it.
    cfg = DataConfig(
        format="tsv", path=_tsv(tmp_path / "all.tsv", GOOD), split=SplitConfig(0.0, 0.2)
    )
    (tmp_path / "hashed").mkdir()
    with pytest.raises(EmptySplitError, match=r"ingest kept no validation rows \(train \d+, "):
        ingest(cfg, out=tmp_path / "hashed", seed=0, beam_args=BEAM_ARGS)


MULTI30K = Path(__file__).resolve().parents[3] / "shared" / "data" / "multi30k"


@pytest.mark.skipif(not (MULTI30K / "train.en").is_file(), reason="needs ../shared/data/multi30k")
def test_real_corpus_with_one_percent_of_each_bad_kind(tmp_path):
    english = (MULTI30K / "train.en").read_text(encoding="utf-8").splitlines()
    german = (MULTI30K / "train.de").read_text(encoding="utf-8").splitlines()
    clean = [(e.encode(), g.encode()) for e, g in zip(english[:3000], german[:3000])]
    n = len(clean) // 100  # 1% of the corpus per kind
    # A given test file of n later pairs whose English is not in the clean rows.
    clean_sources = {e for e, _ in clean}
    test = [(e.encode(), g.encode()) for e, g in zip(english[3000:], german[3000:])]
    test = [pair for pair in test if pair[0] not in clean_sources][:n]
    bad = {
        "empty_source": [(b"", g) for _, g in clean[:n]],
        "empty_target": [(e, b"  ") for e, _ in clean[:n]],
        "undecodable": [(e[:5] + b"\xff\xfe" + e[5:], g) for e, g in clean[:n]],
        "control_characters": [(e, g + b"\x00") for e, g in clean[:n]],
        "too_long": [((e + b" ") * 10, g) for e, g in clean[:n]],
        "length_ratio": [(e, g.split()[0]) for e, g in clean[:n] if len(e.split()) > 9],
        "identical": [(e, e) for e, _ in clean[:n]],
        "duplicate": clean[n : 2 * n],
        # A test sentence (spaced differently) in the training file: it would leak into training.
        "source_in_other_split": [(e.replace(b" ", b"  "), g) for e, g in test],
    }
    rows = list(clean)
    for injected in bad.values():
        rows += injected
    cfg = DataConfig(
        format="text",
        source_path=_write_lines(tmp_path / "m.en", [s for s, _ in rows]),
        target_path=_write_lines(tmp_path / "m.de", [t for _, t in rows]),
        test_source_path=_write_lines(tmp_path / "t.en", [s for s, _ in test]),
        test_target_path=_write_lines(tmp_path / "t.de", [t for _, t in test]),
        max_words=40,
    )
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)
    expected = {reason: len(injected) for reason, injected in bad.items()}
    assert all(count > 0 for count in expected.values())
    assert result.rejected == expected
    assert result.counts["test"] == len(test) == n
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["read"] == len(rows) + len(test)
    assert stats["kept"] == len(clean) + len(test)
    assert stats["files"]["m.en"] == {
        "read": len(rows),
        "kept": len(clean),
        "rejected": sum(expected.values()),
    }


def _corpus_with_duplicates(directory) -> DataConfig:
    """60 pairs, then every fourth repeated: duplicates land in other chunks and runs."""
    pairs = [(f"pair {i} .", f"paar {i} .") for i in range(60)]
    pairs += pairs[::4]
    return DataConfig(
        format="text",
        source_path=_write_lines(directory / "d.en", [s.encode() for s, _ in pairs]),
        target_path=_write_lines(directory / "d.de", [t.encode() for _, t in pairs]),
        split=SplitConfig(validation=0.2, test=0.2),
        num_shards=3,
    )


def _artifact_bytes(cfg, out, beam_args) -> dict[str, bytes]:
    out.mkdir()
    ingest(cfg, out=out, seed=0, beam_args=beam_args)
    return {
        p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".tfrecord", ".jsonl")
    } | {"statistics.json": (out / "statistics.json").read_bytes()}


def test_chunk_and_spill_sizes_do_not_change_the_output(tmp_path, monkeypatch):
    cfg = _corpus_with_duplicates(tmp_path)
    whole = _artifact_bytes(cfg, tmp_path / "whole", BEAM_ARGS)
    monkeypatch.setattr(chunks, "LINES_PER_CHUNK", 7)
    monkeypatch.setattr(sorted_runs, "SPILL_BYTES", 1)  # one run per row
    assert _artifact_bytes(cfg, tmp_path / "spilled", BEAM_ARGS) == whole
    assert not (tmp_path / "spilled" / "_runs").exists()
    rejected = [json.loads(line) for line in whole[REJECTED_FILE].decode().splitlines()]
    # The earliest copy is kept: the rejected ones are lines 61-75, in line order.
    assert [(r["reason"], r["origin"]) for r in rejected] == [
        ("duplicate", f"d.en:{line}") for line in range(61, 76)
    ]


def test_duplicates_can_be_kept(tmp_path):
    cfg = dataclasses.replace(_corpus_with_duplicates(tmp_path), reject_duplicates=False)
    out = tmp_path / "out"
    out.mkdir()
    result = ingest(cfg, out=out, seed=0, beam_args=BEAM_ARGS)
    assert sum(result.counts.values()) == 75 and result.rejected == {}
    assert sum(len(_read_split(out, split)) for split in result.counts) == 75


def test_multi_process_runner_writes_the_same_bytes(tmp_path):
    cfg = _corpus_with_duplicates(tmp_path)
    in_memory = _artifact_bytes(cfg, tmp_path / "in_memory", BEAM_ARGS)
    workers = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    processes = _artifact_bytes(cfg, tmp_path / "processes", ["--runner=FnApiRunner", *workers])
    assert processes == in_memory


def test_character_and_ratio_summaries():
    from components.stats import summarize_characters, summarize_ratio

    counts = {"a": 5, "ä": 3, "ö": 1, " ": 1}
    assert summarize_characters(counts) == {
        "distinct": 4,
        "non_ascii_share": 0.4,
        "top_non_ascii": [["ä", 3], ["ö", 1]],
    }
    # Ratios in tenths: 0.5 once, 1.0 eight times, 2.0 once.
    assert summarize_ratio({"5": 1, "10": 8, "20": 1}) == {
        "p5": 0.5,
        "p50": 1.0,
        "p95": 2.0,
        "mean": 1.05,
    }
