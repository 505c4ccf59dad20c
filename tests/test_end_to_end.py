"""The whole pipeline on the smoke config, through the real CLI.

One module-scoped run serves several checks: the summary, the SavedModel in a fresh process,
TensorBoard event files, caching on a second run and identical metrics from a second workdir.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow


def _run(workdir: Path) -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            "run_pipeline.py",
            "--config",
            "configs/smoke.yaml",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((workdir / "summary.json").read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e") / "workdir"
    return workdir, _run(workdir)


def test_summary_lists_every_stage_as_ran(first_run):
    workdir, summary = first_run
    assert list(summary["stages"]) == ["ingest", "tokenize", "train", "evaluate", "export"]
    assert {s["status"] for s in summary["stages"].values()} == {"ran"}
    for stage in summary["stages"].values():
        assert (Path(stage["artifact_dir"]) / "manifest.json").is_file()
    assert 0.0 <= summary["metrics"]["bleu"] <= 100.0
    assert summary["metrics"]["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert summary["serving_model_dir"] == str(workdir / "serving" / "smoke" / "1")
    stats = json.loads(
        (Path(summary["stages"]["ingest"]["artifact_dir"]) / "statistics.json").read_text()
    )
    assert stats["read"] == 600 and stats["kept"] + stats["rejected_total"] == 600


_FRESH = """
import json, sys
import tensorflow as tf
import tensorflow_text
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps([t.decode() for t in out["translation"].numpy()]))
"""


def test_saved_model_in_fresh_process_matches_evaluation(first_run):
    _, summary = first_run
    predictions = Path(summary["stages"]["evaluate"]["artifact_dir"]) / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()[:3]]
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH,
            summary["serving_model_dir"],
            json.dumps([r["source"] for r in rows]),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    served = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(served) == 3 and all(served)
    assert served == [r["translation"] for r in rows]


def _tags(directory: Path) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                number = float(tensor) if tensor.dtype.kind == "f" else 0.0
                values.setdefault(value.tag, []).append(number)
    return values


def test_tensorboard_has_losses_learning_rate_and_samples(first_run):
    _, summary = first_run
    logdir = Path(summary["tensorboard_logdir"])
    train, validation, samples = (_tags(logdir / d) for d in ("train", "validation", "samples"))
    assert len(train["epoch_loss"]) == 2 and all(map(math.isfinite, train["epoch_loss"]))
    assert len(validation["epoch_loss"]) == 2 and all(map(math.isfinite, validation["epoch_loss"]))
    assert "epoch_masked_accuracy" in validation
    assert train["epoch_learning_rate"][0] > 0
    assert len(samples["sample_translations"]) == 2


def test_second_run_is_cached_and_reproducible(first_run, tmp_path):
    workdir, summary = first_run
    again = _run(workdir)
    assert {s["status"] for s in again["stages"].values()} == {"cached"}
    assert again["serving_model_dir"] == summary["serving_model_dir"]  # nothing new pushed
    other = _run(tmp_path / "other")
    first_metrics = Path(summary["stages"]["evaluate"]["artifact_dir"]) / "metrics.json"
    other_metrics = Path(other["stages"]["evaluate"]["artifact_dir"]) / "metrics.json"
    assert first_metrics.read_bytes() == other_metrics.read_bytes()
    assert other["fingerprints"] == summary["fingerprints"]
