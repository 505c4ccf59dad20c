"""The runner: fingerprints, caching, resumable staging, atomic push."""

import dataclasses
import fcntl
import json
import os
import shutil
import sys
import threading

import pytest

from pipeline import push
from pipeline.artifacts import ArtifactStore, fingerprint
from pipeline.config import PipelineConfig, to_dict
from pipeline.runner import PipelineError, Stage, _run_record, run_pipeline


@dataclasses.dataclass
class Done:
    value: int


def _stages(calls: list[str]):
    def first(cfg, inputs, out, beam_args):
        calls.append("first")
        (out / "value.txt").write_text(str(cfg.train.epochs))
        return Done(cfg.train.epochs)

    def second(cfg, inputs, out, beam_args):
        calls.append("second")
        upstream = int((inputs["first"] / "value.txt").read_text())
        (out / "value.txt").write_text(str(upstream * 10 + cfg.evaluate.batch_size))
        return Done(upstream)

    module = [sys.modules[__name__]]
    return [
        Stage("first", (), first, lambda c: to_dict(c.train), lambda: module),
        Stage("second", ("first",), second, lambda c: to_dict(c.evaluate), lambda: module),
    ]


def test_second_run_is_all_cached_and_changes_rerun_downstream(tmp_path):
    calls: list[str] = []
    cfg = PipelineConfig()
    summary = run_pipeline(cfg, tmp_path, _stages(calls))
    assert [s["status"] for s in summary["stages"].values()] == ["ran", "ran"]
    summary = run_pipeline(cfg, tmp_path, _stages(calls))
    assert [s["status"] for s in summary["stages"].values()] == ["cached", "cached"]
    assert calls == ["first", "second"]

    cfg.evaluate.batch_size = 7  # only the second stage reads this section
    summary = run_pipeline(cfg, tmp_path, _stages(calls))
    assert {k: v["status"] for k, v in summary["stages"].items()} == {
        "first": "cached",
        "second": "ran",
    }
    out = summary["stages"]["second"]["artifact_dir"]
    assert open(f"{out}/value.txt").read() == str(cfg.train.epochs * 10 + 7)
    manifest = json.loads(open(f"{out}/manifest.json").read())
    assert manifest["input_fingerprints"] == {"first": summary["fingerprints"]["first"]}
    assert (
        json.loads((tmp_path / "summary.json").read_text())["fingerprints"]
        == summary["fingerprints"]
    )


def _third(calls: list[str]) -> Stage:
    def third(cfg, inputs, out, beam_args):
        calls.append("third")
        return Done(int((inputs["second"] / "value.txt").read_text()))

    return Stage("third", ("second",), third, lambda c: {}, lambda: [sys.modules[__name__]])


def test_stages_flag_requires_cached_upstream_before_any_work(tmp_path):
    calls: list[str] = []
    stages = [*_stages(calls), _third(calls)]
    with pytest.raises(PipelineError) as error:
        run_pipeline(PipelineConfig(), tmp_path, stages, only=["first", "third"])
    assert str(error.value) == (
        "--stages first,third needs second too: this config has no artifact of it in "
        f"{tmp_path}/artifacts. Run --stages first,second,third"
    )
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_stage_outside_stages_stays_cached_when_its_upstream_reruns(tmp_path):
    calls: list[str] = []
    stages = [*_stages(calls), _third(calls)]
    first = run_pipeline(PipelineConfig(), tmp_path, stages)
    # A fingerprint depends on its inputs' fingerprints, not their files: rebuilding `first`
    # gives the same fingerprints, so `second`'s artifact is still the one to use.
    shutil.rmtree(first["stages"]["first"]["artifact_dir"])
    shutil.rmtree(first["stages"]["third"]["artifact_dir"])
    summary = run_pipeline(PipelineConfig(), tmp_path, stages, only=["first", "third"])
    assert calls == ["first", "second", "third", "first", "third"]
    assert {k: v["status"] for k, v in summary["stages"].items()} == {
        "first": "ran",
        "second": "cached",
        "third": "ran",
    }
    assert summary["fingerprints"] == first["fingerprints"]


def test_no_stages_is_an_error_that_writes_nothing(tmp_path):
    (tmp_path / "summary.json").write_text('{"stages": {"first": "earlier run"}}')
    with pytest.raises(PipelineError, match="^no stages given"):
        run_pipeline(PipelineConfig(), tmp_path, _stages([]), only=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert (tmp_path / "summary.json").read_text() == '{"stages": {"first": "earlier run"}}'


def test_an_unusable_workdir_is_one_line_and_exit_code_2(tmp_path, capsys):
    from run_pipeline import main

    (tmp_path / "file").write_text("")
    with pytest.raises(PipelineError, match=f"^cannot use workdir {tmp_path}/file: File exists$"):
        run_pipeline(PipelineConfig(), tmp_path / "file", _stages([]))
    workdir = tmp_path / "file" / "sub"
    assert main(["--config", "configs/smoke.yaml", "--workdir", str(workdir)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: cannot use workdir {workdir}: Not a directory\n"
    assert captured.out == ""


def test_cli_without_stages_exits_2_and_keeps_the_last_summary(tmp_path, capsys):
    from run_pipeline import main

    (tmp_path / "summary.json").write_text("{}")
    for given in (",", "", " , "):
        code = main(
            ["--config", "configs/smoke.yaml", "--workdir", str(tmp_path), "--stages", given]
        )
        assert code == 2
        assert capsys.readouterr().err.startswith("no stages given in --stages; stages are [")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_stages_flag_runs_only_the_named_stages(tmp_path):
    calls: list[str] = []
    summary = run_pipeline(PipelineConfig(), tmp_path, _stages(calls), only=["first"])
    assert calls == ["first"] and list(summary["stages"]) == ["first"]
    summary = run_pipeline(PipelineConfig(), tmp_path, _stages(calls), only=["second"])
    assert calls == ["first", "second"]
    assert {k: v["status"] for k, v in summary["stages"].items()} == {
        "first": "cached",
        "second": "ran",
    }


def test_failed_stage_leaves_no_artifact_and_its_staging_until_the_next_run(tmp_path):
    def broken(cfg, inputs, out, beam_args):
        (out / "half.txt").write_text("partial")
        raise RuntimeError("boom")

    stage = Stage("broken", (), broken, lambda c: {}, lambda: [sys.modules[__name__]])
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(PipelineConfig(), tmp_path, [stage])
    fp = fingerprint("broken", {}, {}, "x")
    assert ArtifactStore(tmp_path).lookup("broken", fp) is None
    # No artifact; the staging directory stays for a look (its lock file does not).
    [staging] = (tmp_path / "artifacts" / "broken").iterdir()
    assert staging.name.startswith(".partial-") and (staging / "half.txt").read_text() == "partial"
    # The stage's next run, under another fingerprint, removes it.
    other = Stage("broken", (), broken, lambda c: {"other": 1}, lambda: [sys.modules[__name__]])
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(PipelineConfig(), tmp_path, [other])
    [left] = (tmp_path / "artifacts" / "broken").iterdir()
    assert left != staging and left.name.startswith(".partial-")


def test_a_failed_resumable_stage_keeps_its_staging_directory(tmp_path):
    def broken(cfg, inputs, out, beam_args):
        (out / "checkpoint.txt").write_text("step 7")
        raise RuntimeError("boom")

    stage = Stage("train", (), broken, lambda c: {}, lambda: [], resumable=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(PipelineConfig(), tmp_path, [stage])
    [staging] = (tmp_path / "artifacts" / "train").iterdir()
    assert staging.name.startswith(".partial-")
    assert (staging / "checkpoint.txt").read_text() == "step 7"


def test_a_resumable_stage_reports_the_staging_of_other_settings(tmp_path, caplog):
    def broken(cfg, inputs, out, beam_args):
        (out / "state.npz").write_bytes(b"x" * 2_000_000)
        raise RuntimeError("boom")

    first = Stage("train", (), broken, lambda c: {"epochs": 1}, lambda: [], resumable=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(PipelineConfig(), tmp_path, [first])
    [old] = (tmp_path / "artifacts" / "train").iterdir()
    other = Stage("train", (), broken, lambda c: {"epochs": 2}, lambda: [], resumable=True)
    with caplog.at_level("WARNING", logger="pipeline"), pytest.raises(RuntimeError):
        run_pipeline(PipelineConfig(), tmp_path, [other])
    # Kept (a run with the first settings resumes from it), and said so with its size.
    assert old.is_dir()
    assert f"kept {old} (2.0 MB): an unfinished run under other settings" in caplog.text


def _hold_lock(path) -> int:
    """Locks `path` as a live run building that staging directory does."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_abandoned_staging_directories_go_and_live_ones_stay(tmp_path):
    stage_dir = tmp_path / "artifacts" / "first"
    for name in (".partial-dead", ".partial-dead2", ".partial-live"):
        (stage_dir / name).mkdir(parents=True)
        (stage_dir / name / "half.txt").write_text("x")
    (stage_dir / ".partial-dead2.lock").write_text("")  # its run was killed: nobody holds it
    fd = _hold_lock(stage_dir / ".partial-live.lock")  # another run is writing this one
    try:
        summary = run_pipeline(PipelineConfig(), tmp_path, _stages([]), only=["first"])
    finally:
        os.close(fd)
    fp = summary["fingerprints"]["first"]
    assert sorted(p.name for p in stage_dir.iterdir()) == sorted(
        [fp, ".partial-live", ".partial-live.lock"]
    )
    assert (stage_dir / ".partial-live" / "half.txt").read_text() == "x"


def test_two_runs_of_the_same_stage_at_once_take_turns(tmp_path):
    calls: list[str] = []
    started, release = threading.Event(), threading.Event()

    def slow(cfg, inputs, out, beam_args):
        calls.append("slow")
        (out / "value.txt").write_text("1")
        started.set()
        assert release.wait(30)
        return Done(1)

    stages = [Stage("slow", (), slow, lambda c: {}, lambda: [sys.modules[__name__]])]
    summaries: dict[str, dict] = {}

    def run(name):
        summaries[name] = run_pipeline(PipelineConfig(), tmp_path, stages)

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    second.join(1.0)  # it waits for the first run's lock, leaving its staging directory alone
    [staging] = (tmp_path / "artifacts" / "slow").glob(".partial-*[0-9a-f]")
    assert (staging / "value.txt").read_text() == "1" and second.is_alive()
    release.set()
    first.join(30)
    second.join(30)
    assert calls == ["slow"]
    assert summaries["first"]["stages"]["slow"]["status"] == "ran"
    assert summaries["second"]["stages"]["slow"]["status"] == "cached"
    # Each run keeps its own record, even when both started in the same second.
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
    assert sorted(p.name for p in (tmp_path / "artifacts" / "slow").iterdir()) == [
        summaries["first"]["fingerprints"]["slow"]
    ]


def test_fingerprint_depends_on_each_part():
    base = fingerprint("train", {"a": 1}, {"ingest": "x"}, "code1")
    assert base == fingerprint("train", {"a": 1}, {"ingest": "x"}, "code1")
    assert base != fingerprint("train", {"a": 2}, {"ingest": "x"}, "code1")
    assert base != fingerprint("train", {"a": 1}, {"ingest": "y"}, "code1")
    assert base != fingerprint("train", {"a": 1}, {"ingest": "x"}, "code2")


def test_push_versions_increase_and_skip_same_export(tmp_path):
    model = tmp_path / "export"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    root = tmp_path / "serving" / "m"
    first, pushed = push.push(model, root, "fp1")
    assert (first.name, pushed) == ("1", True)
    assert push.push(model, root, "fp1") == (first, False)
    # Another export of a byte-identical model (say, only export.min_bleu changed): no version.
    assert push.push(model, root, "fp2") == (first, False)
    (model / "saved_model.pb").write_bytes(b"pb2")
    second, pushed = push.push(model, root, "fp3")
    assert (second.name, pushed) == ("2", True)
    assert (second / "saved_model.pb").read_bytes() == b"pb2"
    lineage = json.loads((second / push.LINEAGE).read_text())
    assert lineage["fingerprint"] == "fp3"
    assert lineage["model_sha256"] == push.model_digest(second) == push.model_digest(model)
    assert push.versions(root) == [1, 2]
    assert not list(root.glob(".tmp-*"))


def test_only_canonical_version_numbers_are_versions(tmp_path):
    root = tmp_path / "m"
    for name in ("1", "0007", "\u00b2", "backup", "3"):
        (root / name).mkdir(parents=True)
    assert push.versions(root) == [1, 3]
    assert push.prune(root, keep=1) == [1]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["0007", "3", "backup", "\u00b2"]


def test_pushes_at_once_take_distinct_versions(tmp_path):
    root = tmp_path / "serving" / "m"
    models = []
    for i in range(4):
        model = tmp_path / f"export{i}"
        _fake_saved_model(model, files=50)
        (model / "saved_model.pb").write_bytes(f"pb{i}".encode())
        models.append(model)
    results = []
    threads = [
        threading.Thread(target=lambda m=m, i=i: results.append(push.push(m, root, f"fp{i}")))
        for i, m in enumerate(models)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(int(path.name) for path, pushed in results if pushed) == [1, 2, 3, 4]
    assert push.versions(root) == [1, 2, 3, 4] and not list(root.glob(".tmp-*"))
    contents = {(root / str(v) / "saved_model.pb").read_bytes() for v in push.versions(root)}
    assert contents == {b"pb0", b"pb1", b"pb2", b"pb3"}


def _fake_saved_model(path, files=200):
    (path / "variables").mkdir(parents=True)
    for i in range(files):
        (path / "variables" / f"variables.data-{i:05d}").write_bytes(b"x" * 20_000)
    (path / "variables" / "variables.index").write_bytes(b"index")
    (path / "saved_model.pb").write_bytes(b"pb")


def test_a_polling_server_never_sees_half_a_version(tmp_path):
    model = tmp_path / "export"
    _fake_saved_model(model)
    root = tmp_path / "serving" / "m"
    seen, incomplete = set(), []
    finished = threading.Event()

    def pusher():
        for i in range(6):
            (model / "saved_model.pb").write_bytes(f"pb{i}".encode())  # a new model each time
            push.push(model, root, f"fp{i}")
            push.prune(root, keep=2)
        finished.set()

    thread = threading.Thread(target=pusher)
    thread.start()
    polls = 0
    while not finished.is_set() and polls < 200_000:
        polls += 1
        for version in push.versions(root):
            directory = root / str(version)
            seen.add(version)
            try:
                files = len(list((directory / "variables").iterdir()))
                complete = (directory / "saved_model.pb").is_file() and files == 201
            except FileNotFoundError:  # pruned between listing and looking: gone whole
                complete = not directory.exists()
            # A version pruned while we looked is gone as a whole: only a present one counts.
            if not complete and directory.exists():
                incomplete.append(version)
    thread.join()
    assert incomplete == []
    assert push.versions(root) == [5, 6] and len(seen) >= 2


def test_prune_keeps_newest(tmp_path):
    root = tmp_path / "m"
    for version in (1, 2, 3, 10):
        (root / str(version)).mkdir(parents=True)
    assert push.prune(root, keep=2) == [1, 2]
    assert push.versions(root) == [3, 10]


def test_drift_against_the_previous_run_is_recorded(tmp_path):
    def fake_ingest(cfg, inputs, out, beam_args):
        count = cfg.data.builtin_pairs
        stats = {
            "count": {"train": count},
            "rejected": {},
            "rejected_total": 0,
            "read": count,
            "words": {},
        }
        (out / "statistics.json").write_text(json.dumps(stats))
        return Done(count)

    module = [sys.modules[__name__]]
    stage = Stage("ingest", (), fake_ingest, lambda c: to_dict(c.data), lambda: module)
    cfg = PipelineConfig()
    first = run_pipeline(cfg, tmp_path, [stage])
    assert first["anomalies"] == []  # nothing to compare with yet
    cfg.data.builtin_pairs = 10
    second = run_pipeline(cfg, tmp_path, [stage])
    assert [a["kind"] for a in second["anomalies"]] == ["count_change"]
    record = json.loads((tmp_path / "anomalies.json").read_text())
    assert record["previous"] == first["stages"]["ingest"]["artifact_dir"]
    assert record["anomalies"][0]["current"] == 10


def test_runs_started_in_the_same_second_get_their_own_records(tmp_path):
    started = 1_795_000_000.0
    paths = [_run_record(tmp_path / "runs", started) for _ in range(3)]
    assert [p.name for p in paths] == [
        "20261118-110640.json",
        "20261118-110640-2.json",
        "20261118-110640-3.json",
    ]
    assert all(p.is_file() for p in paths)
