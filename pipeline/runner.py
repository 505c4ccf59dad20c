"""The DAG runner: runs each stage or reuses its cached artifact, pushes, writes the run record.

A stage's fingerprint hashes its config section, the fingerprints of its inputs and its code,
so an unchanged pipeline re-runs in seconds and a change re-runs exactly what it touches.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline import push as push_lib
from pipeline.anomalies import detect_drift
from pipeline.artifacts import (
    DIGEST_CACHE,
    ArtifactStore,
    code_version,
    fingerprint,
    source_digests,
    write_json,
)
from pipeline.config import PipelineConfig, dump_yaml, to_dict
from pipeline.staging import locked_staging, remove_abandoned

log = logging.getLogger("pipeline")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the DAG: which config it reads, which stages feed it, how to run it."""

    name: str
    inputs: tuple[str, ...]
    # (config, {input stage: artifact dir}, out dir, beam args) -> result dataclass
    run: Callable[[PipelineConfig, dict[str, Path], Path, list[str]], Any]
    config: Callable[[PipelineConfig], dict]
    modules: Callable[[], list[ModuleType]]
    # A resumable stage keeps its staging directory across a crash (training checkpoints).
    resumable: bool = False
    # (config key, path) of each file it reads from outside the artifact store; their content
    # is part of its fingerprint. Raises ConfigError for a path that names no file.
    sources: Callable[[PipelineConfig], list[tuple[str, str]]] | None = None


def beam_args(cfg: PipelineConfig) -> list[str]:
    """Beam pipeline options from the `beam` section: an explicit runner, then extra args."""
    return [
        f"--runner={cfg.beam.runner}",
        f"--direct_running_mode={cfg.beam.direct_running_mode}",
        f"--direct_num_workers={cfg.beam.direct_num_workers}",
        *cfg.beam.extra_args,
    ]


class PipelineError(Exception):
    """A run that cannot start or go on as asked (stages, workdir): a one-line message, no work."""


@dataclasses.dataclass(frozen=True)
class _Step:
    """A needed stage, as planned before any runs: its fingerprint and whether it may run."""

    stage: Stage
    fingerprint: str
    inputs: dict[str, str]  # input stage -> fingerprint
    code: str
    may_run: bool
    cached: Path | None
    files: list  # [config key, path, sha256] of each input file outside the artifact store


def _prepare_workdir(workdir: Path) -> None:
    """Creates the workdir, or says in one line why it cannot be used."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise PipelineError(f"cannot use workdir {workdir}: {error.strerror or error}") from None


def _plan(
    cfg: PipelineConfig,
    store: ArtifactStore,
    stages: list[Stage],
    only: list[str] | None,
    files: dict[str, list],
) -> list[_Step]:
    """The needed stages with their fingerprints; fails before any work if one cannot be had.

    A fingerprint depends only on the config, the code, the inputs' fingerprints and the input
    files outside the store (`files`, digested up front), never on artifacts' files, so a stage
    outside --stages is known to be cached (or not) before its inputs run.
    """
    needed = _needed(stages, only)
    fingerprints: dict[str, str] = {}
    steps = []
    for stage in stages:
        if stage.name not in needed:
            continue  # downstream of everything asked for: not run, not reported
        inputs = {name: fingerprints[name] for name in stage.inputs}
        code = code_version(stage.modules())
        sources = files.get(stage.name)
        fp = fingerprint(stage.name, stage.config(cfg), inputs, code, sources)
        fingerprints[stage.name] = fp
        may_run = only is None or stage.name in only
        cached = store.lookup(stage.name, fp)
        steps.append(_Step(stage, fp, inputs, code, may_run, cached, sources or []))
    missing = [s.stage.name for s in steps if not (s.may_run or s.cached)]
    if missing:
        runnable = ",".join(s.stage.name for s in steps if s.may_run or s.stage.name in missing)
        raise PipelineError(
            f"--stages {','.join(only or [])} needs {', '.join(missing)} too: this config has "
            f"no artifact of it in {store.root}. Run --stages {runnable}"
        )
    return steps


def _run_stage(step: _Step, cfg: PipelineConfig, store: ArtifactStore, dirs: dict[str, Path]):
    """Builds the step's artifact in its staging directory and publishes it.

    Returns (artifact dir, seconds), seconds None when a concurrent run in this workdir
    published it while this one waited. A failed stage leaves its staging directory for a
    look; the stage's next run removes it, unless the stage is resumable (its checkpoints are
    what a rerun resumes from).
    """
    stage, fp = step.stage, step.fingerprint
    with locked_staging(store.root / stage.name, fp) as staging:
        published = store.lookup(stage.name, fp)
        if published is not None:
            return published, None
        if not stage.resumable:
            for path in remove_abandoned(store.root / stage.name):
                log.info("%-9s removed %s, left by an earlier run", stage.name, path.name)
            shutil.rmtree(staging, ignore_errors=True)
        else:
            _report_kept(store.root / stage.name, staging)
        staging.mkdir(exist_ok=True)
        log.info("%-9s running  (fingerprint %s)", stage.name, fp)
        t0 = time.perf_counter()
        try:
            result = stage.run(cfg, {n: dirs[n] for n in stage.inputs}, staging, beam_args(cfg))
        except Exception:
            # Kept for a look (ingest's rejected rows, say); the stage's next run removes it.
            log.error("%-9s failed; what it wrote is in %s", stage.name, staging)
            raise
        seconds = round(time.perf_counter() - t0, 2)
        manifest = {
            "inputs": {n: str(dirs[n]) for n in stage.inputs},
            "input_fingerprints": step.inputs,
            "config": stage.config(cfg),
            "source_files": step.files,
            "code_version": step.code,
            "result": dataclasses.asdict(result),
            "seconds": seconds,
        }
        return store.publish(staging, stage.name, fp, manifest), seconds


def _report_kept(stage_dir: Path, staging: Path) -> list[Path]:
    """Says which staging directories of other settings a resumable stage keeps (each holds
    the state a run with those settings resumes from), with their size, so they can be
    deleted by hand once not needed. Returns them."""
    kept = [p for p in sorted(stage_dir.glob(".partial-*")) if p.is_dir() and p != staging]
    for path in kept:
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        log.warning(
            "%-9s kept %s (%.1f MB): an unfinished run under other settings, which resumes "
            "when run again with them; delete it if not needed",
            stage_dir.name,
            path,
            size / 1e6,
        )
    return kept


def run_pipeline(
    cfg: PipelineConfig,
    workdir: Path,
    stages: list[Stage],
    only: list[str] | None = None,
) -> dict:
    """Runs `stages` in order (or only those named in `only`); returns and writes the summary.

    Raises PipelineError, before any stage runs, for an empty `only`, an unusable workdir or a
    stage outside `only` without a cached artifact; ConfigError for an input that names no file.
    """
    if only is not None and not only:
        raise PipelineError("no stages given: name at least one stage to run")
    needed = _needed(stages, only)
    # Before any work: a configured input that names no file stops the run here.
    sources = {s.name: s.sources(cfg) for s in stages if s.name in needed and s.sources}
    workdir = Path(workdir).resolve()
    _prepare_workdir(workdir)
    files = {name: source_digests(paths, workdir / DIGEST_CACHE) for name, paths in sources.items()}
    store = ArtifactStore(workdir)
    plan = _plan(cfg, store, stages, only, files)
    previous_ingest = _previous_artifact(workdir, "ingest")
    dump_yaml(cfg, workdir / "config.yaml")
    started = time.time()
    fingerprints = {step.stage.name: step.fingerprint for step in plan}
    dirs: dict[str, Path] = {}
    report: dict[str, dict] = {}
    for step in plan:
        name, seconds = step.stage.name, None
        if step.cached is not None:
            dirs[name] = step.cached
        else:
            dirs[name], seconds = _run_stage(step, cfg, store, dirs)
        if seconds is None:
            report[name] = {"status": "cached", "seconds": 0.0, "artifact_dir": str(dirs[name])}
            log.info("%-9s cached   %s", name, dirs[name])
        else:
            report[name] = {"status": "ran", "seconds": seconds, "artifact_dir": str(dirs[name])}
            log.info("%-9s done     %.1f s  %s", name, seconds, dirs[name])
    summary = _summary(cfg, workdir, store, fingerprints, dirs, report, started)
    if "ingest" in dirs:
        summary["anomalies"] = _record_drift(workdir, previous_ingest, dirs["ingest"])
    # Unsorted: stages stay in pipeline order.
    write_json(workdir / "summary.json", summary, sort_keys=False)
    write_json(_run_record(workdir / "runs", started), summary, sort_keys=False)
    return summary


def _run_record(runs: Path, started: float) -> Path:
    """A new `runs/<start time>.json` path, claimed; `-2`, `-3`... for runs started in the same
    second, so concurrent runs in one workdir each keep their record."""
    runs.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    for n in itertools.count(1):
        path = runs / (f"{stamp}.json" if n == 1 else f"{stamp}-{n}.json")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _previous_artifact(workdir: Path, stage: str) -> Path | None:
    """The artifact the last run in this workdir used for `stage`, if it still exists."""
    try:
        summary = json.loads((workdir / "summary.json").read_text())
        path = Path(summary["stages"][stage]["artifact_dir"])
    except (OSError, KeyError, ValueError):
        return None
    return path if path.is_dir() else None


def _record_drift(workdir: Path, previous: Path | None, current: Path) -> list[dict]:
    """Compares ingest statistics with the previous run's; writes `anomalies.json`."""
    anomalies: list[dict] = []
    if previous is not None and previous != current:
        anomalies = detect_drift(
            json.loads((previous / "statistics.json").read_text()),
            json.loads((current / "statistics.json").read_text()),
        )
    record = {
        "previous": str(previous) if previous else None,
        "current": str(current),
        "anomalies": anomalies,
    }
    write_json(workdir / "anomalies.json", record, sort_keys=False)
    for anomaly in anomalies:
        log.warning("drift    %s", anomaly["message"])
    return anomalies


def _needed(stages: list[Stage], only: list[str] | None) -> set[str]:
    """The stages asked for and everything upstream of them (all stages when `only` is None)."""
    if only is None:
        return {stage.name for stage in stages}
    by_name = {stage.name: stage for stage in stages}
    needed: set[str] = set()
    pending = list(only)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(by_name[name].inputs)
    return needed


def _summary(cfg, workdir, store, fingerprints, dirs, report, started) -> dict:
    summary: dict[str, Any] = {
        "stages": report,
        "fingerprints": fingerprints,
        "config": to_dict(cfg),
        "started": started,
        "seconds": round(time.time() - started, 2),
    }
    if "evaluate" in dirs:
        summary["metrics"] = store.read_manifest("evaluate", fingerprints["evaluate"])["result"][
            "metrics"
        ]
    if "train" in dirs:
        summary["tensorboard_logdir"] = str(dirs["train"] / "logs")
    if "export" in dirs:
        summary.update(_push(cfg, workdir, dirs["export"], fingerprints["export"]))
    return summary


def _push(cfg: PipelineConfig, workdir: Path, export_dir: Path, export_fp: str) -> dict:
    """Pushes a blessed export to serving/<model_name>/; an unblessed one stays where it is."""
    blessing = json.loads((export_dir / "blessing.json").read_text())
    serving_root = workdir / "serving" / cfg.model_name
    if not blessing["blessed"]:
        log.warning(
            "serving  not pushed: BLEU %.2f is below export.min_bleu %.2f",
            blessing["bleu"],
            blessing["min_bleu"],
        )
        latest = push_lib.versions(serving_root)
        return {
            "blessed": False,
            "pushed": False,
            "serving_model_dir": str(serving_root / str(latest[-1])) if latest else None,
        }
    version_dir, pushed = push_lib.push(export_dir / "saved_model", serving_root, export_fp)
    removed = push_lib.prune(serving_root, cfg.export.keep_versions)
    log.info("serving  %s %s", "pushed" if pushed else "up to date", version_dir)
    if removed:
        log.info("serving  removed old versions %s", removed)
    return {"blessed": True, "pushed": pushed, "serving_model_dir": str(version_dir)}
