"""Data-stage benchmark: ingest + tokenize on 1x, 4x and 16x Multi30k, and vocabulary learning.

    make bench-data                                   # from the repository root
    python benchmarks/data.py --scales 1 16 --mode in_memory --workers 1 --skip-anchor

For each scale N, the Multi30k train files concatenated N times (written under
benchmarks/work/data/, never into the repository) go through `run_pipeline.py --stages
ingest,tokenize` of configs/multi30k_en_de.yaml, with the given val and test2016 files as its
validation and test splits, in a fresh subprocess and a fresh workdir (nothing cached), on the
multi-process local runner with one worker per core (`--mode`, `--workers` choose another). The
copies are exact duplicates of each other, which the duplicate rule would reject (and the
rejected-row limit would then stop the run), so the benchmark sets
`data.reject_duplicates=false`: the 16x run really pushes 16 times the rows through ingest and
tokenize. Measured per scale: wall seconds of the subprocess (Python and TensorFlow start-up
included), ingest rows read per second and tokenize rows per second (rows from the stage
manifests, seconds from summary.json), and the peak RSS of the whole process tree (the pipeline
and every Beam worker it starts): /proc is sampled every 50 ms, the RSS of the process and all
its descendants summed at each sample, the maximum over time reported (`ru_maxrss` would see one
process only).

Then, in this process: this project's WordPiece learner (`models.tokenizer.learn_wordpiece`,
8k per side, min_count 2, from the word counts of Multi30k train; counting is timed apart) and
the anchor, tensorflow-text's `bert_vocab_from_dataset` with 8k per side as the TensorFlow
Transformer tutorial calls it (train sentences batched by 1000, `lower_case=True`, default learn
parameters; it counts the words itself). Prints a table and writes benchmarks/results/data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "multi30k"
CONFIG = ROOT / "configs" / "multi30k_en_de.yaml"
SIDES = ("en", "de")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def concatenated_copies(data: Path, scale: int, work: Path) -> dict[str, Path]:
    """The train files repeated `scale` times, written once under `work` and reused."""
    directory = work / "corpus" / f"{scale}x"
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for side in SIDES:
        original, copy = data / f"train.{side}", directory / f"train.{side}"
        if not copy.is_file() or copy.stat().st_size != scale * original.stat().st_size:
            with open(copy, "wb") as out:
                for _ in range(scale):
                    with open(original, "rb") as chunk:
                        shutil.copyfileobj(chunk, out)
        paths[side] = copy
    return paths


def _children() -> dict[int, list[int]]:
    """{parent pid: child pids} of every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # "pid (command) state ppid ...": the command may hold spaces and parentheses.
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(parent, []).append(int(entry.name))
    return children


def tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and all its descendants, summed."""
    children, total, pending = _children(), 0, [root]
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            pass
        pending.extend(children.get(pid, ()))
    return total


def run_measured(command: list[str], interval: float = 0.05) -> tuple[float, int]:
    """Runs `command`; returns its wall seconds and the peak RSS of its process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, tree_rss_bytes(process.pid))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = process.wait()
    seconds = time.perf_counter() - started
    sampler.join()
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, command)
    return seconds, peak


def pipeline_command(workdir: Path, train: dict[str, Path], overrides: list[str]) -> list[str]:
    sets = [f"data.source_path={train['en']}", f"data.target_path={train['de']}", *overrides]
    return [
        sys.executable,
        str(ROOT / "run_pipeline.py"),
        "--config",
        str(CONFIG),
        "--workdir",
        str(workdir),
        "--stages",
        "ingest,tokenize",
        *[arg for item in sets for arg in ("--set", item)],
    ]


def stage_rows_and_seconds(workdir: Path) -> dict[str, tuple[int, float]]:
    """{stage: (rows, seconds)}: ingest counts rows read, tokenize rows tokenized."""
    stages = json.loads((workdir / "summary.json").read_text())["stages"]
    measured = {}
    for stage in ("ingest", "tokenize"):
        manifest = json.loads((Path(stages[stage]["artifact_dir"]) / "manifest.json").read_text())
        result = manifest["result"]
        rows = sum(result["counts"].values()) + sum(result.get("rejected", {}).values())
        measured[stage] = (rows, stages[stage]["seconds"])
    return measured


def benchmark_scale(scale: int, work: Path, overrides: list[str]) -> dict:
    """Ingest + tokenize of the `scale`x corpus in a fresh workdir and subprocess."""
    train = concatenated_copies(DATA, scale, work)
    workdir = work / "runs" / f"{scale}x"
    shutil.rmtree(workdir, ignore_errors=True)
    seconds, peak = run_measured(pipeline_command(workdir, train, overrides))
    measured = stage_rows_and_seconds(workdir)
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        **{f"{stage}_rows": rows for stage, (rows, _) in measured.items()},
        **{f"{stage}_seconds": secs for stage, (_, secs) in measured.items()},
        **{
            f"{stage}_rows_per_second": round(rows / max(secs, 1e-9), 1)
            for stage, (rows, secs) in measured.items()
        },
    }


def time_vocab_learners(data: Path, vocab_size: int, anchor: bool) -> dict:
    """Seconds to learn `vocab_size` WordPiece per side: this project's learner and the anchor."""
    from models.tokenizer import RESERVED_TOKENS, count_words, learn_wordpiece

    lines = {side: (data / f"train.{side}").read_text("utf-8").splitlines() for side in SIDES}
    started = time.perf_counter()
    counts = {side: count_words(lines[side]) for side in SIDES}
    count_seconds = time.perf_counter() - started
    started = time.perf_counter()
    sizes = {
        side: len(learn_wordpiece(sorted(counts[side].items()), vocab_size, 2)) for side in SIDES
    }
    report = {
        "vocab_count_seconds": round(count_seconds, 3),
        "vocab_learn_seconds": round(time.perf_counter() - started, 3),
        "vocab_size": sizes,
    }
    if anchor:
        import tensorflow as tf
        from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bert_vocab

        started = time.perf_counter()
        anchor_sizes = {}
        for side in SIDES:
            sentences = tf.data.Dataset.from_tensor_slices(lines[side])
            vocab = bert_vocab.bert_vocab_from_dataset(
                sentences.batch(1000).prefetch(2),
                vocab_size=vocab_size,
                reserved_tokens=RESERVED_TOKENS,
                bert_tokenizer_params={"lower_case": True},
                learn_params={},
            )
            anchor_sizes[side] = len(vocab)
        report["anchor_vocab_learn_seconds"] = round(time.perf_counter() - started, 3)
        report["anchor_vocab_size"] = anchor_sizes
    return report


def print_table(scales: dict[str, dict], vocab: dict, runner: str) -> None:
    print(f"ingest + tokenize of Multi30k train x N ({runner})")
    print(
        f"{'scale':<6}{'rows':>9}{'seconds':>9}{'ingest rows/s':>15}{'tokenize rows/s':>17}", end=""
    )
    print(f"{'peak RSS MB':>13}")
    for name, row in scales.items():
        print(
            f"{name:<6}{row['ingest_rows']:>9}{row['seconds']:>9.1f}"
            f"{row['ingest_rows_per_second']:>15.0f}{row['tokenize_rows_per_second']:>17.0f}"
            f"{row['peak_rss_mb']:>13.0f}"
        )
    learned = f"this project {vocab['vocab_learn_seconds']:.2f} s"
    if "anchor_vocab_learn_seconds" in vocab:
        learned += f", bert_vocab_from_dataset {vocab['anchor_vocab_learn_seconds']:.1f} s"
    print(f"8k WordPiece per side on Multi30k train: {learned}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--mode", default="multi_processing", help="beam.direct_running_mode")
    parser.add_argument(
        "--workers", type=int, default=0, help="beam.direct_num_workers, 0: all cores"
    )
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--skip-anchor", action="store_true", help="skip bert_vocab_from_dataset")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data.json")
    args = parser.parse_args()

    overrides = [
        "data.reject_duplicates=false",  # the copies are exact duplicates (see the docstring)
        f"beam.direct_running_mode={args.mode}",
        f"beam.direct_num_workers={args.workers}",
        *args.overrides,
    ]
    scales = {f"{n}x": benchmark_scale(n, args.work, overrides) for n in args.scales}
    vocab = time_vocab_learners(DATA, args.vocab_size, anchor=not args.skip_anchor)
    runner = f"{args.mode}, {args.workers or os.cpu_count()} worker(s), {os.cpu_count()} cores"
    print_table(scales, vocab, runner)
    first = next(iter(scales.values()))
    report = {
        **{key: {name: row[key] for name, row in scales.items()} for key in first},
        **vocab,
        "runner": runner,
        "overrides": overrides,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
