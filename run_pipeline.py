"""Runs the translation pipeline: ingest -> tokenize -> train -> evaluate -> export.

python run_pipeline.py --config configs/default.yaml --workdir workdir --set train.epochs=20
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.yaml", help="YAML config file")
    parser.add_argument("--workdir", default="workdir", help="where artifacts and runs go")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=20 (repeatable)",
    )
    parser.add_argument(
        "--beam-arg",
        dest="beam_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra Apache Beam pipeline option, e.g. --beam-arg=--temp_location=gs://b/tmp",
    )
    parser.add_argument(
        "--stages",
        default=None,
        help="comma-separated stages to run, e.g. ingest,tokenize (others must be cached)",
    )
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    """The validated config of the command line: file, --set overrides, --beam-arg options."""
    from pipeline.config import load_config

    cfg = load_config(args.config, args.overrides)
    cfg.beam.extra_args = [*cfg.beam.extra_args, *args.beam_args]
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from pipeline.config import ConfigError

    try:
        cfg = resolve_config(args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    # Before TensorFlow makes its first tensor, when it picks its CPU allocator for good.
    from components.allocator import use_bfc_cpu_allocator

    use_bfc_cpu_allocator(cfg.train.cpu_allocator == "bfc")
    from pipeline.stages import STAGE_NAMES, STAGES

    only = None
    if args.stages is not None:
        only = [s.strip() for s in args.stages.split(",") if s.strip()]
        if not only:
            print(f"no stages given in --stages; stages are {STAGE_NAMES}", file=sys.stderr)
            return 2
        unknown = [s for s in only if s not in STAGE_NAMES]
        if unknown:
            print(f"unknown stage(s) {unknown}; stages are {STAGE_NAMES}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    from pipeline.runner import PipelineError, run_pipeline

    try:
        summary = run_pipeline(cfg, Path(args.workdir), STAGES, only)
    except ConfigError as error:  # found before any stage ran, e.g. an input that names no file
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    keys = ("metrics", "blessed", "pushed", "serving_model_dir", "tensorboard_logdir")
    # blessed / pushed say whether serving_model_dir holds this run's model or an earlier one.
    shown = {k: summary.get(k) for k in keys}
    shown["stages"] = {k: v["status"] for k, v in summary["stages"].items()}
    print(json.dumps(shown, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
