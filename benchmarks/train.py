"""Training throughput benchmark: the full input/step configuration against a naive one.

    make bench-train
    python benchmarks/train.py --steps 60 --preset tutorial

Both run the `tutorial` preset (4 layers, d_model 128, dff 512, 8 heads) on Multi30k token ids
produced by this pipeline's ingest and tokenize stages (cached under benchmarks/work/), in one
process. Each case is built and warmed up, then the cases take turns (`--rounds`, 3: a third of
each case's timed steps per round), so a change in the shared machine's speed during the run
reaches every case alike:
- naive: 64 sentences per batch in file order after a shuffle, padded to the batch maximum,
  no XLA, one step per tf.function call;
- full: packed rows (`train.pack_length`, 32 source tokens, and `train.pack_target_length`, 30
  target tokens: several pairs per row, attention masked per pair) in token-budget batches
  (`train.batch_tokens`), `steps_per_execution`, XLA
  (`jit_compile`: two programs, for rows of 32 and for the few pairs longer than that, in rows
  of `max_length`), and the layer paths XLA needs on a CPU (models/compiled.py: hash dropout
  masks, written-out gradients of projections and layer norms, fused attention projections).
  `--pack-length 0` runs the earlier full configuration instead: length buckets, batches
  padded to their bucket's bound;
- full_no_xla (not with --no-jit or --skip-no-xla): the full configuration without XLA, to
  show what XLA adds on this machine.
The process runs with glibc's M_TOP_PAD raised as training sets it (train.malloc_top_pad_mb,
components/allocator.py), for both cases; `--malloc-top-pad-mb 0` leaves glibc's default. Its
TensorFlow CPU tensors come from the allocator training uses (train.cpu_allocator, TensorFlow's
BFC pool by default), for both cases too; `--cpu-allocator system` times them on malloc.
Reported: non-padding target tokens per second (over all rounds, and per round), the pad
fraction of target positions, and the model's achieved FLOP/s as a share of a float32 matmul
timed on this machine (once per round; the median).
Writes benchmarks/results/train.json.
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
sys.path.insert(0, str(ROOT))

from components.allocator import (  # noqa: E402  (after the path insert)
    bfc_cpu_allocator_active,
    keep_freed_memory,
    use_bfc_cpu_allocator,
)
from pipeline.config import TrainConfig  # noqa: E402


def tokenized_multi30k(workdir: Path) -> Path:
    """Runs ingest and tokenize on Multi30k (cached when unchanged); returns the artifact."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_pipeline.py"),
            "--config",
            "configs/multi30k_en_de.yaml",
            "--workdir",
            str(workdir),
            "--stages",
            "ingest,tokenize",
        ],
        check=True,
        cwd=ROOT,
    )
    return Path(
        json.loads((workdir / "summary.json").read_text())["stages"]["tokenize"]["artifact_dir"]
    )


def matmul_flops_per_s(size: int = 1024, repeats: int = 20) -> float:
    """float32 matmul FLOP/s on this machine: the ceiling the model is compared with."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    tf.linalg.matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def naive_batches(pairs, batch_size: int, seed: int):
    def to_inputs(source, target):
        return {"source": source, "target_in": target[:, :-1]}, target[:, 1:]

    return pairs.shuffle(20000, seed=seed).padded_batch(batch_size).map(to_inputs)


def _shape(batch) -> tuple:
    x, y = batch
    return (*(v.shape for v in x.values()), y.shape)


class Case:
    """One configuration: its model, warmed up on every batch shape, and its timed batches."""

    def __init__(self, name, model, dataset, steps: int, warmup: int):
        """Trains `warmup` steps untimed and keeps the next `steps` batches for timing.

        The warmup also trains once on every batch shape the timed steps will see, so
        compiling (tf.function tracing, XLA programs) is left out of the timing for every case
        alike: in a real run it is paid once and amortized over the epochs."""
        import numpy as np

        self.name, self.model = name, model
        batches = list(dataset.take(warmup + steps).as_numpy_iterator())
        warm, self.timed = batches[:warmup], batches[warmup:]
        seen = {_shape(b) for b in warm}
        for batch in self.timed:
            if _shape(batch) not in seen:
                seen.add(_shape(batch))
                warm.append(batch)
        self.warmup_steps = len(warm)
        model.fit(_as_dataset(warm), epochs=1, verbose=0)
        self.real = [int(np.count_nonzero(y)) for _, y in self.timed]
        self.positions = [int(y.size) for _, y in self.timed]
        self.round_results: list[tuple[int, float]] = []  # (real tokens, seconds) per round

    def run_round(self, start: int, stop: int) -> float:
        """Trains on timed batches [start, stop); returns that chunk's tokens per second."""
        start_time = time.perf_counter()
        self.model.fit(_as_dataset(self.timed[start:stop]), epochs=1, verbose=0)
        seconds = time.perf_counter() - start_time
        real = sum(self.real[start:stop])
        self.round_results.append((real, seconds))
        return real / seconds

    def result(self) -> dict:
        real = sum(r for r, _ in self.round_results)
        seconds = sum(s for _, s in self.round_results)
        return {
            "tokens_per_s": round(real / seconds, 1),
            "pad_fraction": round(1 - sum(self.real) / sum(self.positions), 4),
            "steps": len(self.timed),
            "warmup_steps": self.warmup_steps,
            "seconds": round(seconds, 2),
            "tokens_per_s_by_round": [round(r / s, 1) for r, s in self.round_results],
        }


def _as_dataset(batches):
    import tensorflow as tf

    def generator():
        yield from batches

    x, y = batches[0]
    spec = (
        {k: tf.TensorSpec([None, None], v.dtype) for k, v in x.items()},
        tf.TensorSpec([None, None], y.dtype),
    )
    # As in training (components.input_pipeline): without autotuning, dropping a dataset's
    # iterator cannot stall on tf.data's optimization thread inside a timed case.
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.from_generator(generator, output_signature=spec).with_options(options)


def flops_per_token(model) -> float:
    """Training FLOPs per target token: 6 x the weights every token passes through (Kaplan et
    al. 2020's estimate), counting both the encoder's and the decoder's weights once."""
    embeddings = sum(
        int(w.shape[0] * w.shape[1]) for w in model.weights if "token_embedding" in w.path
    )
    return 6.0 * (model.count_params() - embeddings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tutorial")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the cases take turns: each times steps / rounds of its steps per round",
    )
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--steps-per-execution", type=int, default=4)
    parser.add_argument(
        "--pack-length",
        type=int,
        default=32,
        help="full configs: tokens per packed row (train.pack_length); 0: length buckets",
    )
    parser.add_argument(
        "--pack-target-length",
        type=int,
        default=30,
        help="full configs: target tokens per packed row (train.pack_target_length); "
        "0: --pack-length",
    )
    parser.add_argument(
        "--no-jit", dest="jit", action="store_false", help="full config without XLA"
    )
    parser.add_argument(
        "--skip-no-xla", action="store_true", help="skip the full_no_xla comparison case"
    )
    parser.add_argument(
        "--malloc-top-pad-mb",
        type=int,
        default=TrainConfig.malloc_top_pad_mb,
        help="glibc M_TOP_PAD for the whole process, both cases, as training sets it "
        "(train.malloc_top_pad_mb); 0: glibc's default",
    )
    parser.add_argument(
        "--cpu-allocator",
        choices=("bfc", "system"),
        default=TrainConfig.cpu_allocator,
        help="where TensorFlow's CPU tensors come from, both cases, as training sets it "
        "(train.cpu_allocator)",
    )
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / "work" / "multi30k"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train.json"))
    args = parser.parse_args()
    if not 1 <= args.rounds <= args.steps:
        parser.error(f"--rounds {args.rounds}: use 1 to --steps ({args.steps})")
    # Process-wide, so the naive case runs with it too: only the step configurations differ.
    malloc_top_pad = keep_freed_memory(args.malloc_top_pad_mb)
    use_bfc_cpu_allocator(args.cpu_allocator == "bfc")
    tokenized = tokenized_multi30k(Path(args.workdir))

    import keras

    from components.input_pipeline import load_token_pairs, make_batches
    from components.train import build_model
    from models.tokenizer import TranslationTokenizer

    tokenizer = TranslationTokenizer.from_directory(tokenized / "vocab")
    sizes = (tokenizer.source_vocab_size, tokenizer.target_vocab_size)
    results: dict = {
        "preset": args.preset,
        "tokenized": str(tokenized),
        "jit": args.jit,
        "pack_length": args.pack_length,
        "pack_target_length": args.pack_target_length if args.pack_length else 0,
        "malloc_top_pad_mb": args.malloc_top_pad_mb if malloc_top_pad else 0,
        "cpu_allocator": "bfc" if bfc_cpu_allocator_active() else "system",
    }
    naive_cfg = TrainConfig(preset=args.preset, jit_compile="false", steps_per_execution=1)

    def full_config(jit: bool) -> TrainConfig:
        return TrainConfig(
            preset=args.preset,
            batch_tokens=args.batch_tokens,
            steps_per_execution=args.steps_per_execution,
            jit_compile="true" if jit else "false",
            pad_to_buckets=jit and not args.pack_length,
            pack_length=args.pack_length,
            pack_target_length=args.pack_target_length if args.pack_length else 0,
        )

    configs = {"naive": naive_cfg, "full": full_config(args.jit)}
    if args.jit and not args.skip_no_xla:
        configs["full_no_xla"] = full_config(False)
    # Every model is built before any is warmed up: set_random_seed makes TensorFlow trace each
    # function again at its next call (about 4 s for these), which would land in a timed round.
    models = {}
    for name, cfg in configs.items():
        keras.utils.set_random_seed(0)
        models[name] = build_model(cfg, *sizes)
        if bool(models[name].jit_compile) != (cfg.jit_compile == "true"):
            raise RuntimeError(f"{name}: Keras resolved jit_compile to {models[name].jit_compile}")
    pairs = load_token_pairs(tokenized, "train", naive_cfg.max_length)
    cases = [
        Case(
            name,
            models[name],
            naive_batches(pairs, 64, 0)
            if name == "naive"
            else make_batches(pairs, cfg, shuffle_seed=0),
            args.steps,
            args.warmup,
        )
        for name, cfg in configs.items()
    ]

    # The cases take turns, a chunk of their timed steps per round, so a change in the shared
    # machine's speed during the run reaches every case alike; the matmul reference is timed
    # once per round too.
    bounds = [round(args.steps * r / args.rounds) for r in range(args.rounds + 1)]
    matmul = []
    for r in range(args.rounds):
        line = []
        for case in cases:
            line.append(f"{case.name} {case.run_round(bounds[r], bounds[r + 1]):,.0f}")
        matmul.append(matmul_flops_per_s())
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(line) + " tokens/s", flush=True)
    for case in cases:
        results[case.name] = case.result()
        print(f"{case.name:6s} {json.dumps(results[case.name])}", flush=True)

    def ratio(a: str, b: str) -> float:
        return round(results[a]["tokens_per_s"] / results[b]["tokens_per_s"], 2)

    def ratio_by_round(a: str, b: str) -> list[float]:
        by_round = zip(
            results[a]["tokens_per_s_by_round"], results[b]["tokens_per_s_by_round"], strict=True
        )
        return [round(x / y, 2) for x, y in by_round]

    results["speedup"] = ratio("full", "naive")
    results["speedup_by_round"] = ratio_by_round("full", "naive")
    if "full_no_xla" in results:
        results["xla_speedup"] = ratio("full", "full_no_xla")
        results["xla_speedup_by_round"] = ratio_by_round("full", "full_no_xla")
    results["matmul_flops_per_s"] = round(statistics.median(matmul))
    results["matmul_flops_per_s_by_round"] = [round(m) for m in matmul]
    results["model_flops_per_s"] = round(
        flops_per_token(models["full"]) * results["full"]["tokens_per_s"]
    )
    results["model_flops_share"] = round(
        results["model_flops_per_s"] / results["matmul_flops_per_s"], 4
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k not in ("naive", "full")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
