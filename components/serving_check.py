"""Checks an exported SavedModel the way a model server would see it, in a fresh process.

Run as a script, never imported by the pipeline: it imports only TensorFlow, TF-Text (for the
tokenizer ops) and the TF Serving protos (to read the warmup file), nothing of this project.

    python serving_check.py SAVED_MODEL < request.json > report.json

The request holds {"sentences": [...], "signatures": [...], "latency_runs": n, "batch": n}.
The report holds each signature's translations and scores, the warmup replay and timings.
"""

import json
import statistics
import sys
import time

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF-Text ops the graph uses)
from tensorflow_serving.apis import prediction_log_pb2


def replay_warmup(model, path: str) -> int:
    """Runs every warmup request through its signature; returns how many ran."""
    count = 0
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = model.signatures[request.model_spec.signature_name](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
        if outputs["translation"].shape[0] != inputs["text"].shape[0]:
            raise RuntimeError("a warmup request returned the wrong number of translations")
        count += 1
    return count


def timings(signature, sentences: list[str], runs: int, batch: int) -> dict:
    """p50/p95 latency of single sentences and sentences per second at `batch`."""
    latencies = []
    for i in range(runs):
        text = tf.constant([sentences[i % len(sentences)]])
        start = time.perf_counter()
        signature(text=text)
        latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    batch_text = tf.constant([sentences[i % len(sentences)] for i in range(batch)])
    start = time.perf_counter()
    signature(text=batch_text)
    seconds = time.perf_counter() - start
    return {
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
        },
        f"batch{batch}_sentences_per_s": round(batch / seconds, 1),
    }


def main() -> None:
    path = sys.argv[1]
    request = json.loads(sys.stdin.read())
    model = tf.saved_model.load(path)
    report = {
        "warmup_requests": replay_warmup(model, f"{path}/assets.extra/tf_serving_warmup_requests")
    }
    text = tf.constant(request["sentences"])
    for name in request["signatures"]:
        outputs = model.signatures[name](text=text)
        report[name] = {
            "translation": [t.decode("utf-8") for t in outputs["translation"].numpy()],
            "score": [round(float(s), 4) for s in outputs["score"].numpy()],
        }
    signature = model.signatures["serving_default"]
    report["timing"] = timings(
        signature, request["sentences"], request["latency_runs"], request["batch"]
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
