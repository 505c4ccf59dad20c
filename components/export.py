"""Export stage: a TF Serving SavedModel, checked in a fresh process, and a blessing.

The SavedModel holds the tokenizer and the decoding loops, so a model server needs nothing
else. Signatures: `serving_default` (cached greedy), `beam_search`, `greedy_uncached` (the
baseline, for parity checks and benchmarks) and `tokenize`. Beside it: the `.keras` model for
Keras users, a TF Serving warmup file, an op report, and `blessing.json`, which says whether
the runner may push it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from components.evaluate import load_translator, read_split
from components.op_report import op_report
from components.train import MODEL_FILE
from pipeline.artifacts import write_json
from pipeline.config import DecodingConfig, ExportConfig

SAVED_MODEL_DIR = "saved_model"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
TRANSLATING_SIGNATURES = ("serving_default", "beam_search", "greedy_uncached")
_CHECK_SCRIPT = Path(__file__).with_name("serving_check.py")


@dataclasses.dataclass
class ExportResult:
    saved_model: str
    blessed: bool
    validation: dict


def save_translator(translator, path: Path) -> None:
    """Saves a Translator as a SavedModel with the four signatures."""
    signatures = {
        "serving_default": translator.translate.get_concrete_function(),
        "beam_search": translator.translate_beam.get_concrete_function(),
        "greedy_uncached": translator.translate_uncached.get_concrete_function(),
        "tokenize": translator.tokenize.get_concrete_function(),
    }
    tf.saved_model.save(translator, str(path), signatures=signatures)


def write_warmup_requests(path: Path, model_name: str, sentences: list[str]) -> int:
    """TF Serving warmup records (PredictionLog) for batch sizes 1 and all, per signature."""
    (path / WARMUP_FILE).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tf.io.TFRecordWriter(str(path / WARMUP_FILE)) as writer:
        for signature in ("serving_default", "beam_search"):
            for batch in (sentences[:1], sentences):
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
                )
                request.inputs["text"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
                writer.write(log.SerializeToString())
                count += 1
    return count


def check_in_fresh_process(saved_model: Path, sentences: list[str], cfg: ExportConfig) -> dict:
    """The report of `serving_check.py` run on the SavedModel in a new Python process."""
    request = {
        "sentences": sentences,
        "signatures": list(TRANSLATING_SIGNATURES),
        "latency_runs": cfg.latency_runs,
        "batch": 32,
    }
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}  # no PYTHONPATH: no project code
    completed = subprocess.run(
        # -I: isolated, so neither this project nor its directory is on the path.
        [sys.executable, "-I", str(_CHECK_SCRIPT), str(saved_model.resolve())],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=str(saved_model.resolve()),
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"SavedModel check failed in a fresh process:\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _in_process(translator, sentences: list[str]) -> dict:
    text = tf.constant(sentences)
    methods = {
        "serving_default": translator.translate,
        "beam_search": translator.translate_beam,
        "greedy_uncached": translator.translate_uncached,
    }
    report = {}
    for name, method in methods.items():
        out = method(text)
        report[name] = {
            "translation": [t.decode("utf-8") for t in out["translation"].numpy()],
            "score": [round(float(s), 4) for s in out["score"].numpy()],
        }
    return report


def compare(in_process: dict, fresh: dict) -> list[str]:
    """Differences between the two processes' outputs (empty when they agree)."""
    problems = []
    for name in TRANSLATING_SIGNATURES:
        if in_process[name]["translation"] != fresh[name]["translation"]:
            problems.append(f"{name}: translations differ")
        scores = zip(in_process[name]["score"], fresh[name]["score"])
        if any(abs(a - b) > 1e-3 for a, b in scores):
            problems.append(f"{name}: scores differ")
        if not all(fresh[name]["translation"]):
            problems.append(f"{name}: empty translation")
    if in_process["serving_default"]["translation"] != fresh["greedy_uncached"]["translation"]:
        problems.append("cached and uncached greedy decoding differ")
    return problems


def export(
    cfg: ExportConfig,
    *,
    decoding: DecodingConfig,
    examples: Path,
    tokenized: Path,
    model: Path,
    evaluation: Path,
    out: Path,
    model_name: str,
) -> ExportResult:
    """Writes the SavedModel and its checks; raises if the exported model misbehaves."""
    translator = load_translator(model, tokenized, decoding)
    path = out / SAVED_MODEL_DIR
    save_translator(translator, path)
    shutil.copy2(model / MODEL_FILE, out / MODEL_FILE)
    sentences = [s for s, _ in read_split(examples, "test")[: cfg.num_validation_sentences]]
    warmup = write_warmup_requests(path, model_name, sentences)
    ops = op_report(path)
    write_json(out / "op_report.json", ops)
    if ops["unsupported_ops"]:
        raise RuntimeError(f"ops a stock TF Serving lacks: {ops['unsupported_ops']}")
    in_process = _in_process(translator, sentences)
    fresh = check_in_fresh_process(path, sentences, cfg)
    problems = compare(in_process, fresh)
    if fresh["warmup_requests"] != warmup:
        problems.append(f"replayed {fresh['warmup_requests']} of {warmup} warmup requests")
    validation = {"sentences": sentences, "in_process": in_process, "fresh_process": fresh}
    validation["problems"] = problems
    write_json(out / "validation.json", validation)
    if problems:
        raise RuntimeError(f"the exported model failed validation: {problems}")
    bleu = json.loads((evaluation / "metrics.json").read_text())["bleu"]
    blessed = bleu >= cfg.min_bleu
    blessing = {"blessed": blessed, "bleu": bleu, "min_bleu": cfg.min_bleu, "validation": "passed"}
    write_json(out / "blessing.json", blessing)
    return ExportResult(str(path), blessed, {"timing": fresh["timing"], "warmup_requests": warmup})
