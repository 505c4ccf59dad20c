"""The pipeline's stages in order: what each reads from the config and from upstream."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PipelineConfig, to_dict
from pipeline.runner import Stage


def _modules(*names: str):
    import importlib

    return lambda: [importlib.import_module(n) for n in names]


def _ingest(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, beam_args: list[str]):
    from components.ingest import ingest

    return ingest(cfg.data, out=out, seed=cfg.seed, beam_args=beam_args)


def _tokenize(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, beam_args: list[str]):
    from components.tokenize import tokenize

    return tokenize(cfg.tokenizer, examples=inputs["ingest"], out=out, beam_args=beam_args)


def _train(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, beam_args: list[str]):
    from components.train import train

    return train(
        cfg.train, tokenized=inputs["tokenize"], examples=inputs["ingest"], out=out, seed=cfg.seed
    )


def _evaluate(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, beam_args: list[str]):
    from components.evaluate import evaluate

    return evaluate(
        cfg.evaluate,
        decoding=cfg.decoding,
        examples=inputs["ingest"],
        tokenized=inputs["tokenize"],
        model=inputs["train"],
        out=out,
    )


def _export(cfg: PipelineConfig, inputs: dict[str, Path], out: Path, beam_args: list[str]):
    from components.export import export

    return export(
        cfg.export,
        decoding=cfg.decoding,
        examples=inputs["ingest"],
        tokenized=inputs["tokenize"],
        model=inputs["train"],
        evaluation=inputs["evaluate"],
        out=out,
        model_name=cfg.model_name,
    )


_COMMON = (
    "components.records",
    "components.sorted_runs",
    "components.stats",
    "pipeline.artifacts",
)
_MODEL = (
    "models.tokenizer",
    "models.transformer",
    "models.transformer_layers",
    "models.positional_embedding",
    "models.decoding",
    "models.translator",
    "models.losses",
    "models.schedules",
    "models.optimizers",
)

STAGES = [
    Stage(
        "ingest",
        (),
        _ingest,
        # The seed only matters to the built-in generator; a file corpus ignores it.
        lambda c: {**to_dict(c.data), "seed": c.seed if c.data.format == "builtin" else None},
        _modules(
            "components.ingest",
            "components.ingest_stats",
            "components.validation",
            "components.chunks",
            "components.sources",
            "components.remote",
            "components.data_report",
            "components.builtin_corpus",
            *_COMMON,
        ),
    ),
    Stage(
        "tokenize",
        ("ingest",),
        _tokenize,
        lambda c: to_dict(c.tokenizer),
        _modules(
            "components.tokenize",
            "models.tokenizer",
            "models.wordpiece_learner",
            "models.sentencepiece_learner",
            *_COMMON,
        ),
    ),
    Stage(
        "train",
        ("tokenize", "ingest"),
        _train,
        lambda c: {**to_dict(c.train), "seed": c.seed},
        _modules(
            "components.train",
            "components.train_callbacks",
            "components.checkpointing",
            "components.input_pipeline",
            "components.distribute",
            "models.presets",
            *_MODEL,
            *_COMMON,
        ),
        resumable=True,
    ),
    Stage(
        "evaluate",
        ("ingest", "tokenize", "train"),
        _evaluate,
        lambda c: {**to_dict(c.evaluate), "decoding": to_dict(c.decoding)},
        _modules("components.evaluate", *_MODEL, *_COMMON),
    ),
    Stage(
        "export",
        ("ingest", "tokenize", "train", "evaluate"),
        _export,
        lambda c: {
            **to_dict(c.export),
            "decoding": to_dict(c.decoding),
            "model_name": c.model_name,
        },
        _modules(
            "components.export",
            "components.serving_check",
            "components.op_report",
            "components.evaluate",
            *_MODEL,
            *_COMMON,
        ),
    ),
]

STAGE_NAMES = [s.name for s in STAGES]
