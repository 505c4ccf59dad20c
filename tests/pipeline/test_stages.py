"""What each stage's fingerprint covers: the settings that change its artifact, and for ingest
the content of every input file."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from pipeline.config import ConfigError, PipelineConfig
from pipeline.runner import run_pipeline
from pipeline.stages import STAGES, ingest_sources

BY_NAME = {stage.name: stage for stage in STAGES}
ROWS = b"Hello.\tHallo.\nGood night.\tGute Nacht.\nThank you.\tDanke.\n"


def _config(**sections) -> PipelineConfig:
    cfg = PipelineConfig()
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg


def _same(stage: str, a: PipelineConfig, b: PipelineConfig) -> bool:
    return BY_NAME[stage].config(a) == BY_NAME[stage].config(b)


def test_export_ignores_keep_versions_but_not_min_bleu():
    base = PipelineConfig()
    assert _same("export", base, _config(export={"keep_versions": 9}))
    # blessing.json in the export artifact records min_bleu and decides the push.
    assert not _same("export", base, _config(export={"min_bleu": 30.0}))
    assert not _same("export", base, _config(export={"latency_runs": 5}))
    assert not _same("export", base, _config(decoding={"beam_size": 2}))
    assert not _same("export", base, dataclasses.replace(base, model_name="other"))


def test_builtin_ingest_ignores_the_keys_of_file_formats():
    base = PipelineConfig()
    for key, value in [
        ("download_dir", "/tmp/downloads"),
        ("source_field", "translation.en"),
        ("path", "corpus.tsv"),
        ("source_path", "corpus.en"),
        ("source_column", 2),
        ("reject_source_in_other_split", False),
    ]:
        assert _same("ingest", base, _config(data={key: value})), key
    for key, value in [("builtin_pairs", 10), ("max_words", 5), ("num_shards", 3)]:
        assert not _same("ingest", base, _config(data={key: value})), key
    assert not _same("ingest", base, dataclasses.replace(base, seed=1))


def test_file_ingest_reads_its_own_format_keys_only():
    jsonl = {"format": "jsonl", "path": "corpus.jsonl"}
    base = _config(data=jsonl)
    assert not _same("ingest", base, _config(data={**jsonl, "source_field": "translation.en"}))
    assert not _same("ingest", base, _config(data={**jsonl, "test_path": "test.jsonl"}))
    for key, value in [("download_dir", "/d"), ("source_column", 2), ("builtin_pairs", 10)]:
        assert _same("ingest", base, _config(data={**jsonl, key: value})), key
    assert _same("ingest", base, dataclasses.replace(base, seed=1))


def test_evaluate_reads_beam_settings_only_when_it_scores_beam_search():
    base = PipelineConfig()
    assert _same("evaluate", base, _config(decoding={"beam_size": 8, "length_penalty": 1.0}))
    assert not _same("evaluate", base, _config(decoding={"max_extra_tokens": 2}))
    for evaluate in ({"search": "beam"}, {"score_both": True}):
        assert not _same(
            "evaluate",
            _config(evaluate=evaluate),
            _config(evaluate=evaluate, decoding={"beam_size": 8}),
        )


def test_train_keeps_every_key_its_hparams_log_records():
    assert not _same("train", PipelineConfig(), _config(train={"malloc_top_pad_mb": 0}))


# The ingest stage with its real config and input files, but a stand-in for the Beam pipeline.
@dataclasses.dataclass
class Read:
    rows: int


def _ingest(calls: list[bytes]):
    def read(cfg, inputs, out, beam_args):
        content = b"".join(open(path, "rb").read() for _, path in ingest_sources(cfg))
        calls.append(content)
        (out / "rows.tsv").write_bytes(content)
        rows = content.count(b"\n")
        stats = {"count": {"train": rows}, "rejected": {}, "rejected_total": 0, "read": rows}
        (out / "statistics.json").write_text(json.dumps({**stats, "words": {}}))
        return Read(rows)

    return dataclasses.replace(BY_NAME["ingest"], run=read, modules=lambda: [sys.modules[__name__]])


def _tsv(path) -> PipelineConfig:
    return _config(data={"format": "tsv", "path": str(path)})


def _status(summary: dict) -> str:
    return summary["stages"]["ingest"]["status"]


def test_ingest_reruns_when_its_file_changes_not_when_it_is_touched(tmp_path):
    data, workdir, calls = tmp_path / "pairs.tsv", tmp_path / "wd", []
    data.write_bytes(ROWS)
    first = run_pipeline(_tsv(data), workdir, [_ingest(calls)])
    assert _status(first) == "ran"
    assert _status(run_pipeline(_tsv(data), workdir, [_ingest(calls)])) == "cached"

    data.write_bytes(ROWS.replace(b"Danke.", b"Danke!"))  # one byte, same size
    changed = run_pipeline(_tsv(data), workdir, [_ingest(calls)])
    assert _status(changed) == "ran"
    assert changed["fingerprints"]["ingest"] != first["fingerprints"]["ingest"]
    os.utime(data, ns=(1_600_000_000 * 10**9,) * 2)
    touched = run_pipeline(_tsv(data), workdir, [_ingest(calls)])
    assert _status(touched) == "cached"
    assert touched["fingerprints"] == changed["fingerprints"]

    data.write_bytes(ROWS.splitlines(keepends=True)[0])  # `head -1`
    assert _status(run_pipeline(_tsv(data), workdir, [_ingest(calls)])) == "ran"
    assert calls == [ROWS, ROWS.replace(b"Danke.", b"Danke!"), ROWS.splitlines(True)[0]]
    artifact = changed["stages"]["ingest"]["artifact_dir"]
    manifest = json.loads(open(f"{artifact}/manifest.json").read())
    assert [entry[:2] for entry in manifest["source_files"]] == [["path", str(data)]]


def test_a_deleted_input_stops_the_run_before_any_stage(tmp_path):
    data, workdir, calls = tmp_path / "pairs.tsv", tmp_path / "wd", []
    data.write_bytes(ROWS)
    run_pipeline(_tsv(data), workdir, [_ingest(calls)])
    before = sorted(p.name for p in (workdir / "artifacts" / "ingest").iterdir())
    data.unlink()
    with pytest.raises(ConfigError, match=r"^data.path: file '.*pairs.tsv' not found$"):
        run_pipeline(_tsv(data), workdir, [_ingest(calls)], only=["ingest"])
    assert len(calls) == 1
    assert sorted(p.name for p in (workdir / "artifacts" / "ingest").iterdir()) == before


def test_a_glob_matching_nothing_stops_the_run_before_the_workdir_exists(tmp_path):
    workdir = tmp_path / "wd"
    with pytest.raises(ConfigError, match=r"^data.path: no file matches '.*shard-\*.tsv'$"):
        run_pipeline(_tsv(tmp_path / "shard-*.tsv"), workdir, [_ingest([])])
    given = _config(data={"format": "text", "source_path": __file__, "target_path": __file__})
    given.data.validation_source_path = __file__
    with pytest.raises(ConfigError, match="^data.validation_target_path: no file given$"):
        run_pipeline(given, workdir, [_ingest([])])
    assert not workdir.exists()


def test_identical_files_in_two_clones_give_the_same_fingerprint(tmp_path, monkeypatch):
    fingerprints = []
    for clone in ("a", "b"):
        (tmp_path / clone / "data").mkdir(parents=True)
        for shard in ("corpus-1.tsv", "corpus-0.tsv"):
            (tmp_path / clone / "data" / shard).write_bytes(ROWS + shard.encode())
        monkeypatch.chdir(tmp_path / clone)
        cfg = _tsv("data/corpus-*.tsv")
        assert ingest_sources(cfg) == [("path", "data/corpus-0.tsv"), ("path", "data/corpus-1.tsv")]
        fingerprints.append(run_pipeline(cfg, "wd", [_ingest([])])["fingerprints"])
    assert fingerprints[0] == fingerprints[1]


def test_sources_of_text_remote_and_builtin_inputs(tmp_path):
    for name in ("a-0.en", "a-1.en", "a-0.de", "a-1.de", "b-0.de"):
        (tmp_path / name).write_text(name)
    text = {"format": "text", "source_path": str(tmp_path / "a-*.en")}
    cfg = _config(data={**text, "target_path": str(tmp_path / "a-*.de")})
    assert ingest_sources(cfg) == [
        ("source_path", str(tmp_path / "a-0.en")),
        ("source_path", str(tmp_path / "a-1.en")),
        ("target_path", str(tmp_path / "a-0.de")),
        ("target_path", str(tmp_path / "a-1.de")),
    ]
    uneven = _config(data={**text, "target_path": str(tmp_path / "b-*.de")})
    with pytest.raises(ConfigError, match="data.source_path matches 2 files but data.target_path"):
        ingest_sources(uneven)
    # A URL carries the sha256 its download must match: the URL stands for the content.
    url = "https://example.invalid/pairs.tsv#sha256=" + "0" * 64
    remote = _config(data={"format": "tsv", "path": url, "test_path": str(tmp_path / "a-0.de")})
    assert ingest_sources(remote) == [("test_path", str(tmp_path / "a-0.de"))]
    assert ingest_sources(PipelineConfig()) == []


def test_cli_reports_a_missing_input_as_a_config_error(tmp_path):
    workdir = tmp_path / "wd"
    completed = subprocess.run(
        [
            sys.executable,
            "run_pipeline.py",
            "--workdir",
            str(workdir),
            "--set",
            "data.format=tsv",
            "--set",
            f"data.path={tmp_path / 'missing.tsv'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert (
        f"config error: data.path: file '{tmp_path / 'missing.tsv'}' not found" in completed.stderr
    )
    assert "Traceback" not in completed.stderr
    assert not workdir.exists()
