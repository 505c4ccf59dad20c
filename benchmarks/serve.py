"""Serving benchmark: the exported SavedModel's signatures at batch 1 and 32.

    make bench-serve                       # trains/exports Multi30k first if not cached
    python benchmarks/serve.py --model workdir/serving/translator/1 --sentences FILE

Cases: greedy without cache (`greedy_uncached`), greedy with the KV cache (`serving_default`)
and beam search of width 4 (`beam_search`), each at batch 1 and 32, all through the same
SavedModel, on the same sentences, in one process. Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SENTENCES = ROOT.parent / "shared" / "data" / "multi30k" / "test2016.en"
CASES = {
    "uncached_greedy": "greedy_uncached",
    "cached_greedy": "serving_default",
    "cached_beam4": "beam_search",
}


# The config's model, trained as configured (test2016 BLEU 31 in the measured run); only the
# push threshold is lifted, so a weaker model in a changed config is still measured.
BENCH_OVERRIDES = ["export.min_bleu=0"]


def exported_model(config: str, workdir: Path) -> str:
    """Runs the pipeline (cached when unchanged) and returns its pushed SavedModel."""
    overrides = [arg for item in BENCH_OVERRIDES for arg in ("--set", item)]
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_pipeline.py"),
            "--config",
            config,
            "--workdir",
            str(workdir),
            *overrides,
        ],
        check=True,
        cwd=ROOT,
    )
    return json.loads((workdir / "summary.json").read_text())["serving_model_dir"]


def measure(signature, sentences: list[str], batch: int) -> dict:
    """Sentences/s, generated tokens/s and per-call latency percentiles."""
    import tensorflow as tf

    signature(text=tf.constant(sentences[:batch]))  # warm up outside the clock
    latencies, tokens = [], 0
    started = time.perf_counter()
    for start in range(0, len(sentences), batch):
        text = tf.constant(sentences[start : start + batch])
        t0 = time.perf_counter()
        out = signature(text=text)
        latencies.append((time.perf_counter() - t0) * 1000)
        tokens += int(out["length"].numpy().sum())
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "sentences_per_s": round(len(sentences) / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
        },
        "sentences": len(sentences),
        "batch": batch,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="SavedModel dir (default: export configs/multi30k_en_de)")
    parser.add_argument("--config", default="configs/multi30k_en_de.yaml")
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / "work" / "multi30k"))
    parser.add_argument("--sentences", default=str(DEFAULT_SENTENCES))
    parser.add_argument("--count", type=int, default=256, help="sentences per case")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve.json"))
    args = parser.parse_args()
    model_dir = args.model or exported_model(args.config, Path(args.workdir))
    sentences = Path(args.sentences).read_text(encoding="utf-8").splitlines()[: args.count]

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    model = tf.saved_model.load(model_dir)
    results: dict = {"model": str(model_dir), "sentences_file": args.sentences}
    for batch in (1, 32):
        for case, signature in CASES.items():
            name = f"b{batch}_{case}"
            results[name] = measure(model.signatures[signature], sentences, batch)
            print(f"{name:22s} {json.dumps(results[name])}", flush=True)
    base = results["b1_uncached_greedy"]["sentences_per_s"]
    results["speedup_b32_cached_greedy_vs_b1_uncached_greedy"] = round(
        results["b32_cached_greedy"]["sentences_per_s"] / base, 2
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'case':22s} {'sent/s':>9s} {'tok/s':>9s} {'p50 ms':>9s} {'p95 ms':>9s}")
    for name in (f"b{b}_{c}" for b in (1, 32) for c in CASES):
        r = results[name]
        lat = r["latency_ms"]
        print(
            f"{name:22s} {r['sentences_per_s']:9.2f} {r['tokens_per_s']:9.1f} "
            f"{lat['p50']:9.2f} {lat['p95']:9.2f}"
        )
    print(
        "speedup b32 cached greedy / b1 uncached greedy:",
        results["speedup_b32_cached_greedy_vs_b1_uncached_greedy"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
