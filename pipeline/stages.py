"""The pipeline's stages in order: what each reads from the config and from upstream."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import ConfigError, PipelineConfig, to_dict
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


_ONE_FILE = ("path", "validation_path", "test_path")
_GIVEN_SPLITS = ("reject_source_in_other_split",)  # rows of given validation / test files only
# The data keys each format reads; a key no format lists here matters to every format.
_FORMAT_KEYS = {
    "builtin": ("builtin_pairs",),
    "text": (
        "source_path",
        "target_path",
        "validation_source_path",
        "validation_target_path",
        "test_source_path",
        "test_target_path",
        *_GIVEN_SPLITS,
    ),
    "tsv": (*_ONE_FILE, "source_column", "target_column", *_GIVEN_SPLITS),
    "csv": (*_ONE_FILE, "source_column", "target_column", *_GIVEN_SPLITS),
    "jsonl": (*_ONE_FILE, "source_field", "target_field", *_GIVEN_SPLITS),
    "tfrecord": (*_ONE_FILE, "source_feature", "target_feature", *_GIVEN_SPLITS),
}
_FORMAT_SPECIFIC = {key for keys in _FORMAT_KEYS.values() for key in keys}
# A downloaded input is checked against the sha256 in its URL: where it is kept changes nothing.
_NO_EFFECT_ON_DATA = {"download_dir"}


def ingest_config(c: PipelineConfig) -> dict:
    """The data settings that can change the ingest artifact: those of the chosen format."""
    own = set(_FORMAT_KEYS[c.data.format])
    section = {
        key: value
        for key, value in to_dict(c.data).items()
        if key not in _NO_EFFECT_ON_DATA and (key in own or key not in _FORMAT_SPECIFIC)
    }
    if c.data.format == "builtin":
        section["seed"] = c.seed  # only the built-in generator draws from the seed
    return section


# (keys that pair files) of each input the file formats read; the first group is required.
_PATH_GROUPS = {
    "text": (
        ("source_path", "target_path"),
        ("validation_source_path", "validation_target_path"),
        ("test_source_path", "test_target_path"),
    ),
    "other": (("path",), ("validation_path",), ("test_path",)),
}


def ingest_sources(c: PipelineConfig) -> list[tuple[str, str]]:
    """(key, path) of each local input file, each key's glob expanded in sorted order.

    A remote input (a URL) has no local file yet: its URL names a sha256 that the download
    must match, so the URL in the config already stands for its content. Raises ConfigError,
    naming the key, for a path or glob that names no file.
    """
    if c.data.format == "builtin":
        return []
    from components.remote import is_remote
    from components.sources import matching_files

    files: list[tuple[str, str]] = []
    groups = _PATH_GROUPS["text" if c.data.format == "text" else "other"]
    for number, keys in enumerate(groups):
        patterns = [getattr(c.data, key) for key in keys]
        if number and not any(patterns):
            continue  # no given validation / test files
        counts = []
        for key, pattern in zip(keys, patterns):
            if is_remote(pattern):
                continue
            try:
                paths = matching_files(key, pattern)
            except FileNotFoundError as error:
                raise ConfigError(str(error)) from None
            counts.append(len(paths))
            files += [(key, path) for path in paths]
        if len(counts) == 2 and counts[0] != counts[1]:
            raise ConfigError(
                f"data.{keys[0]} matches {counts[0]} files but data.{keys[1]} matches "
                f"{counts[1]}: source and target files are paired in sorted order"
            )
    return files


def evaluate_config(c: PipelineConfig) -> dict:
    """The evaluate section and the decoding settings its scored signatures use."""
    decoding = to_dict(c.decoding)
    if c.evaluate.search == "greedy" and not c.evaluate.score_both:
        del decoding["beam_size"], decoding["length_penalty"]  # beam search only
    return {**to_dict(c.evaluate), "decoding": decoding}


def export_config(c: PipelineConfig) -> dict:
    """What the SavedModel, its checks and blessing.json depend on.

    `keep_versions` only prunes serving/ after a push (the runner reads it), so it is left
    out. `min_bleu` stays: blessing.json, which decides the push, records it.
    """
    section = to_dict(c.export)
    del section["keep_versions"]
    # model_name is in the warmup requests' model spec.
    return {**section, "decoding": to_dict(c.decoding), "model_name": c.model_name}


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
        ingest_config,
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
        sources=ingest_sources,
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
        # Every key, even the allocator's: the HParams log in the artifact records them all.
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
        evaluate_config,
        _modules("components.evaluate", *_MODEL, *_COMMON),
    ),
    Stage(
        "export",
        ("ingest", "tokenize", "train", "evaluate"),
        _export,
        export_config,
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
