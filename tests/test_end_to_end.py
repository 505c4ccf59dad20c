"""The whole pipeline on the smoke config, through the real CLI.

One module-scoped run serves several checks: the summary, the SavedModel in a fresh process,
TensorBoard event files, caching on a second run and identical metrics from a second workdir.
A shorter run checks the same export with a SentencePiece tokenizer.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.allocator import BFC_ENV
from components.train import MODEL_FILE  # also registers the model's classes for loading
from models.tokenizer import TranslationTokenizer

pytestmark = pytest.mark.slow


def _run(workdir: Path, *overrides: str, stages: str | None = None) -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            "run_pipeline.py",
            "--config",
            "configs/smoke.yaml",
            "--workdir",
            str(workdir),
            *(arg for override in overrides for arg in ("--set", override)),
            *(["--stages", stages] if stages else []),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    summary = json.loads((workdir / "summary.json").read_text())
    # stdout is the result alone, as JSON; progress and logs go to stderr.
    shown = json.loads(completed.stdout)
    assert shown["stages"] == {k: v["status"] for k, v in summary["stages"].items()}
    return summary


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


def test_export_has_signatures_warmup_op_report_and_keras_file(first_run):
    _, summary = first_run
    export_dir = Path(summary["stages"]["export"]["artifact_dir"])
    served = Path(summary["serving_model_dir"])
    assert (served / "variables" / "variables.index").is_file()
    warmup = served / "assets.extra" / "tf_serving_warmup_requests"
    # serving_default and beam_search, each at batch 1 and at the full sample batch.
    assert sum(1 for _ in tf.data.TFRecordDataset(str(warmup))) == 4
    ops = json.loads((export_dir / "op_report.json").read_text())
    assert ops["tf_text_ops"] == [
        "NormalizeUTF8",
        "RegexSplitWithOffsets",
        "WordpieceTokenizeWithOffsets",
    ]
    assert ops["unsupported_ops"] == []
    validation = json.loads((export_dir / "validation.json").read_text())
    assert validation["problems"] == []
    fresh = validation["fresh_process"]
    assert fresh["serving_default"] == validation["in_process"]["serving_default"]
    assert fresh["greedy_uncached"]["translation"] == fresh["serving_default"]["translation"]
    assert fresh["timing"]["latency_ms"]["p95"] >= fresh["timing"]["latency_ms"]["p50"] > 0
    assert json.loads((export_dir / "blessing.json").read_text())["blessed"] is True
    # The Keras file loads in safe mode once components.train (imported above) registered
    # the project's classes, as the README says.
    reloaded = keras.saving.load_model(export_dir / "model.keras")
    train_result = Path(summary["stages"]["train"]["artifact_dir"]) / "train_result.json"
    assert reloaded.count_params() == json.loads(train_result.read_text())["parameters"]


def test_translate_cli_prints_the_served_translations(first_run):
    _, summary = first_run
    predictions = Path(summary["stages"]["evaluate"]["artifact_dir"]) / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()[:3]]
    sources = [r["source"] for r in rows]
    translations = [r["translation"] for r in rows]
    cli = [sys.executable, "-m", "pipeline.translate", summary["serving_model_dir"]]
    # Lines of stdin, a blank one among them, in batches of 2: one output line per input line.
    from_stdin = subprocess.run(
        [*cli, "--batch-size", "2"],
        input=f"{sources[0]}\n\n{sources[1]}\n  \n{sources[2]}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert from_stdin.returncode == 0, from_stdin.stderr[-2000:]
    assert from_stdin.stdout.split("\n") == [
        translations[0], "", translations[1], "", translations[2], ""
    ]  # fmt: skip
    # Sentences as arguments may follow the options.
    from_args = subprocess.run(
        [*cli, "--batch-size", "1", *sources[:2]], capture_output=True, text=True, check=False
    )
    assert from_args.returncode == 0, from_args.stderr[-2000:]
    assert from_args.stdout.splitlines() == translations[:2]
    bad = subprocess.run([*cli, "--batch-size", "0"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "--batch-size: must be at least 1, got 0" in bad.stderr


def _tags(directory: Path) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                scalar = tensor is not None and tensor.dtype.kind == "f" and tensor.size == 1
                number = float(tensor) if scalar else 0.0
                values.setdefault(value.tag, []).append(number)
    return values


def _steps(directory: Path) -> dict[str, list[int]]:
    steps: dict[str, list[int]] = {}
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def _graph_ops(directory: Path) -> set[str]:
    ops: set[str] = set()
    for path in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            if event.graph_def:
                graph = tf.compat.v1.GraphDef.FromString(event.graph_def)
                ops.update(node.op for node in graph.node)
    return ops


def test_tensorboard_has_losses_learning_rate_and_samples(first_run):
    _, summary = first_run
    logdir = Path(summary["tensorboard_logdir"])
    train, validation, samples = (_tags(logdir / d) for d in ("train", "validation", "samples"))
    assert len(train["epoch_loss"]) == 6 and all(map(math.isfinite, train["epoch_loss"]))
    assert len(validation["epoch_loss"]) == 6 and all(map(math.isfinite, validation["epoch_loss"]))
    assert "epoch_masked_accuracy" in validation
    assert train["epoch_learning_rate"][0] > 0
    assert len(samples["sample_translations"]) == 6
    for name, values in (
        ("perplexity", validation["epoch_perplexity"]),
        ("tokens/s", train["target_tokens_per_second"]),
        ("bleu", validation["validation_bleu"]),
    ):
        assert len(values) == 6 and all(map(math.isfinite, values)), name
    assert min(validation["epoch_perplexity"]) > 1.0
    assert min(train["target_tokens_per_second"]) > 0.0
    assert "_hparams_/session_start_info" in _tags(logdir)
    # One gradient norm per training step, and the epoch means.
    norms = train["gradient_norm"]
    assert len(norms) > 6 and all(math.isfinite(n) and n > 0 for n in norms)
    assert len(train["epoch_gradient_norm"]) == 6
    # The model graph, for the Graphs dashboard: inputs to attention to logits.
    ops = _graph_ops(logdir / "train")
    assert {"Placeholder", "MatMul", "Softmax", "Einsum"} <= ops
    attention = _tags(logdir / "attention")
    assert len(attention["sentence_0/layer_0"]) == 6 and "sentence_1/tokens" in attention
    # Every per-epoch series sits at the step Keras gives its epoch_* scalars: 0 to 5.
    epochs = list(range(6))
    train_steps, validation_steps = _steps(logdir / "train"), _steps(logdir / "validation")
    assert sorted(train_steps["epoch_loss"]) == sorted(validation_steps["epoch_loss"]) == epochs
    assert sorted(train_steps["target_tokens_per_second"]) == epochs
    assert sorted(validation_steps["validation_bleu"]) == epochs
    assert sorted(_steps(logdir / "samples")["sample_translations"]) == epochs
    assert sorted(_steps(logdir / "attention")["sentence_0/layer_0"]) == epochs


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


def test_sentencepiece_pipeline_exports_a_servable_model(tmp_path):
    # Two epochs: enough for non-empty translations, which the export's check requires. The
    # final weights are the mean of both epochs', and the test split is scored with beam search.
    overrides = (
        "tokenizer.kind=sentencepiece_unigram",
        "train.epochs=2",
        "train.average_last_epochs=2",
        "evaluate.search=beam",
        "evaluate.score_both=true",
    )
    summary = _run(tmp_path / "workdir", *overrides)
    assert {s["status"] for s in summary["stages"].values()} == {"ran"}
    _check_averaged_weights(Path(summary["stages"]["train"]["artifact_dir"]), epochs=(1, 2))
    _check_beam_scores(summary)
    vocab = Path(summary["stages"]["tokenize"]["artifact_dir"]) / "vocab"
    export_dir = Path(summary["stages"]["export"]["artifact_dir"])
    ops = json.loads((export_dir / "op_report.json").read_text())
    assert ops["tf_text_ops"] == ["NormalizeUTF8", "SentencepieceOp", "SentencepieceTokenizeOp"]
    assert ops["unsupported_ops"] == []
    validation = json.loads((export_dir / "validation.json").read_text())
    assert validation["problems"] == []
    fresh, in_process = validation["fresh_process"], validation["in_process"]
    assert fresh["serving_default"] == in_process["serving_default"]
    assert all(fresh["beam_search"]["translation"])
    # The served tokenizer is the tokenize stage's SentencePiece model.
    sentences = validation["sentences"]
    served = tf.saved_model.load(summary["serving_model_dir"]).signatures["tokenize"]
    out = served(text=tf.constant(sentences))
    tokenizer = TranslationTokenizer.from_directory(vocab)
    expected = tokenizer.source.tokenize(tf.constant(sentences)).to_list()
    lengths = out["lengths"].numpy().tolist()
    served_ids = [row[:n] for row, n in zip(out["token_ids"].numpy().tolist(), lengths)]
    assert served_ids == expected


def test_xla_training_with_hash_dropout_masks(first_run, tmp_path):
    # The XLA path: fixed bucket shapes, hash dropout masks, a compiled step. It trains, and
    # validation with bucket-padded batches still scores every validation token.
    overrides = (
        "train.jit_compile=true",
        "train.deterministic=false",
        "train.pad_to_buckets=true",
        "train.epochs=2",
    )
    summary = _run(tmp_path / "workdir", *overrides, stages="ingest,tokenize,train")
    train_dir = Path(summary["stages"]["train"]["artifact_dir"])
    result = json.loads((train_dir / "train_result.json").read_text())
    assert result["jit_compile"] is True
    assert all(math.isfinite(v) for v in result["final"].values())
    history = json.loads((train_dir / "history.json").read_text())
    assert history["loss"][1] < history["loss"][0]
    _, reference = first_run
    reference_dir = Path(reference["stages"]["train"]["artifact_dir"])
    reference_result = json.loads((reference_dir / "train_result.json").read_text())
    assert reference_result["jit_compile"] is False
    # run_pipeline.py chose TensorFlow's BFC pool (train.cpu_allocator) before its first tensor.
    expected = {"true": "bfc", "1": "bfc"}.get(os.environ.get(BFC_ENV, "true").lower(), "system")
    assert reference_result["cpu_allocator"] == result["cpu_allocator"] == expected
    assert result["final"]["val_target_tokens"] == reference_result["final"]["val_target_tokens"]


def test_packed_training_sees_every_target_token(first_run, tmp_path):
    # Packed rows (several pairs per row, masks per pair): an epoch still holds every training
    # target token exactly once, the same count as the unpacked run's, and the loss falls.
    summary = _run(
        tmp_path / "workdir",
        "train.pack_length=32",
        "train.epochs=2",
        stages="ingest,tokenize,train",
    )
    train_dir = Path(summary["stages"]["train"]["artifact_dir"])
    history = json.loads((train_dir / "history.json").read_text())
    assert history["loss"][1] < history["loss"][0]
    _, reference = first_run
    reference_dir = Path(reference["stages"]["train"]["artifact_dir"])
    reference_history = json.loads((reference_dir / "history.json").read_text())
    assert history["target_tokens"][:2] == reference_history["target_tokens"][:2]
    assert history["val_target_tokens"][0] == reference_history["val_target_tokens"][0]


def _check_averaged_weights(train_dir: Path, epochs) -> None:
    """model.keras holds the mean of the epochs' saved float weights."""
    model = keras.saving.load_model(train_dir / MODEL_FILE, safe_mode=True)
    saved = [np.load(train_dir / "checkpoints" / f"weights-epoch-{e:04d}.npz") for e in epochs]
    compared = 0
    for i, variable in enumerate(model.variables):
        if "float" in str(variable.dtype):
            mean = sum(s[str(i)].astype(np.float64) for s in saved) / len(saved)
            np.testing.assert_allclose(variable.numpy(), mean, rtol=0, atol=1e-6)
            compared += 1
    assert compared > 10
    # The two epochs did differ, so this was an average and not a copy of either.
    assert not np.array_equal(saved[0]["0"], saved[1]["0"])
    averaged = json.loads((train_dir / "train_result.json").read_text())["averaged"]
    assert averaged["epochs"] == list(epochs) and math.isfinite(averaged["val_loss"])


def _check_beam_scores(summary: dict) -> None:
    """Headline scores are the beam_search signature's; greedy's are reported beside them;
    the predictions are what the served beam_search signature outputs."""
    metrics = summary["metrics"]
    assert metrics["signature"] == "beam_search"
    both = metrics["by_signature"]
    assert set(both) == {"beam_search", "serving_default"}
    assert both["beam_search"]["bleu"] == metrics["bleu"]
    assert both["beam_search"]["chrf"] == metrics["chrf"]
    predictions = Path(summary["stages"]["evaluate"]["artifact_dir"]) / "predictions.jsonl"
    rows = [json.loads(line) for line in predictions.read_text().splitlines()[:4]]
    served = tf.saved_model.load(summary["serving_model_dir"]).signatures["beam_search"]
    out = served(text=tf.constant([r["source"] for r in rows]))["translation"].numpy()
    assert [t.decode() for t in out] == [r["translation"] for r in rows]
