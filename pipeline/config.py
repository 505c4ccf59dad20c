"""One typed config tree for the whole pipeline, loaded from YAML.

Every stage reads only its own section. Unknown keys and wrong types stop the run before any
work, with a message that names the key and where it came from (the YAML file or `--set`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


@dataclasses.dataclass
class BeamConfig:
    # FnApiRunner runs in-process and never downloads a runner binary (DirectRunner may try Prism).
    runner: str = "FnApiRunner"
    # in_memory is fastest for small corpora; multi_processing runs direct_num_workers worker
    # processes (0: one per CPU core), each with its own Python and TensorFlow (~0.7 GB).
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "in_memory"
    direct_num_workers: int = 1
    # Passed verbatim to PipelineOptions, e.g. ["--project=p", "--region=europe-west1"].
    extra_args: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SplitConfig:
    # Fractions of distinct source sentences; train gets the rest.
    validation: float = 0.05
    test: float = 0.05


@dataclasses.dataclass
class DataConfig:
    # builtin: the seeded constructed-language generator; text: two line-aligned files;
    # tsv, csv, jsonl, tfrecord: one file (data.path) holding both sides of each pair.
    format: Literal["builtin", "text", "tsv", "csv", "jsonl", "tfrecord"] = "builtin"
    builtin_pairs: int = 20000
    # Paths may be globs over shards (read in sorted order); a name ending in .gz is gzip.
    source_path: str = ""
    target_path: str = ""
    # Optional files that ARE the validation / test split; otherwise those come from the hash.
    validation_source_path: str = ""
    validation_target_path: str = ""
    test_source_path: str = ""
    test_target_path: str = ""
    # tsv/csv/jsonl/tfrecord: the input file or glob of shards; .gz files are read as gzip.
    path: str = ""
    # Optional file or glob, in data.path's format, that IS the validation split.
    validation_path: str = ""
    # Optional file or glob, in data.path's format, that IS the test split.
    test_path: str = ""
    # tsv/csv: 0-based column of the source sentence (Anki/Tatoeba files: english<TAB>other).
    source_column: int = 0
    # tsv/csv: 0-based column of the target sentence.
    target_column: int = 1
    # jsonl: field holding the source string; a dotted name reaches into objects ("a.en").
    source_field: str = "source"
    # jsonl: field holding the target string.
    target_field: str = "target"
    # tfrecord: bytes feature of each tf.train.Example holding the source sentence.
    source_feature: str = "source"
    # tfrecord: bytes feature holding the target sentence.
    target_feature: str = "target"
    # NFC composes accents so the same word always has one byte form.
    unicode_form: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFC"
    # Rows with more words than this on either side go to the rejected-rows file.
    max_words: int = 100
    # Word-count ratio between the sides beyond which a pair is misaligned (Moses' default 9).
    max_length_ratio: float = 9.0
    # A "translation" equal to its source is usually untranslated text.
    reject_identical: bool = True
    # An exact repeat of a pair (within one input split) adds no information, only weight.
    reject_duplicates: bool = True
    # A source sentence also in a given test (or validation) file would leak it into training
    # (or model selection): test keeps it over validation over the main input.
    reject_source_in_other_split: bool = True
    # More rejected rows than this share fails the stage: the input, not its rows, is wrong.
    max_rejected_fraction: float = 0.5
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    num_shards: int = 2
    # Where remote inputs (https://...#sha256=HEX) are kept; "" = ~/.cache/translation-pipeline.
    download_dir: str = ""


@dataclasses.dataclass
class TokenizerConfig:
    # wordpiece: BERT-style pieces on punctuation-split words; sentencepiece_unigram /
    # sentencepiece_bpe: SentencePiece on whitespace-split words, detokenizes exactly.
    kind: Literal["wordpiece", "sentencepiece_unigram", "sentencepiece_bpe"] = "wordpiece"
    # Upper bounds; the learner stops earlier when the corpus has fewer pieces.
    source_vocab_size: int = 4000
    target_vocab_size: int = 4000
    # Words seen fewer times than this are not learned as whole pieces.
    min_count: int = 2
    # One vocabulary learned from both sides (then source/target sizes must be equal).
    shared_vocab: bool = False
    # Applied to raw text inside the tokenizer, so served input is normalized like training data.
    normalization: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFC"


@dataclasses.dataclass
class TrainConfig:
    # A named size (models/presets.py) sets the four fields below it; "custom" uses them.
    preset: Literal["custom", "tiny", "small", "tutorial", "base", "big"] = "custom"
    num_layers: int = 2
    d_model: int = 128
    num_heads: int = 4
    dff: int = 256
    dropout: float = 0.1
    label_smoothing: float = 0.1
    # Pre-layer-norm trains stably with a short warmup; False is the paper's post-norm.
    norm_first: bool = True
    # One embedding matrix for source, target and output (needs tokenizer.shared_vocab).
    share_embeddings: bool = False
    # auto: TPU if configured, MirroredStrategy on several GPUs, else the default strategy.
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = "auto"
    # auto: float32 on CPU (bfloat16 gained little there), mixed_float16 on GPU, bfloat16 on TPU.
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    # XLA: "auto" compiles on GPU/TPU only (Keras' rule). "true" needs deterministic: false;
    # on the 2-core CPU, with pack_length 32, it trained the tutorial preset 1.20x and 1.34x
    # faster in two runs of make bench-train after 30c68f2, using the layers' XLA paths
    # (models/compiled.py: hash dropout masks, written-out gradients, fused projections).
    jit_compile: Literal["auto", "true", "false"] = "auto"
    # Training steps per tf.function call: fewer Python round trips per step.
    steps_per_execution: int = 1
    # Pad training batches to their length bucket's bound: a few fixed shapes, for XLA.
    pad_to_buckets: bool = False
    # Pack training pairs into rows of this many tokens, several pairs per row, each attending
    # only to itself (0: off, one pair per row in length buckets). On Multi30k, rows of 32 leave
    # 10% padding (bucket-padded batches: 15%). XLA sees two batch shapes: rows of this length,
    # and rows of max_length for the pairs longer than that (shorter pairs fill them up).
    pack_length: int = 0
    # Target tokens per packed row (0: pack_length). The target side of a caption pair is a
    # little shorter (Multi30k: 14.8 tokens to the source's 15.4); rows of 32 source and 30
    # target tokens leave 5% of target positions padding instead of 10%.
    pack_target_length: int = 0
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    # Longest token sequence (with start/end tokens) the model sees; longer pairs are skipped.
    max_length: int = 64
    # Target tokens per batch: batches of short sentences hold more sentences.
    batch_tokens: int = 2048
    epochs: int = 8
    # The final model is the mean of the weights at the end of the last this many epochs, as
    # Vaswani et al. (2017) averaged their last checkpoints (1: the last epoch's weights).
    average_last_epochs: int = 1
    # Vaswani et al. (2017) schedule: linear warmup, then inverse square root decay.
    warmup_steps: int = 400
    shuffle_buffer: int = 20000
    # Fixed validation sentences translated into TensorBoard text each epoch.
    num_sample_translations: int = 4
    # Fixed validation sentences whose BLEU is logged each epoch (0: none).
    num_bleu_sentences: int = 200
    # Fixed validation sentences whose cross-attention heatmaps are drawn each epoch.
    num_attention_images: int = 2
    # Makes weights and metrics reproducible for the same config and seed.
    deterministic: bool = True
    # Freed memory (MiB) each glibc heap keeps instead of returning it to the kernel
    # (M_TOP_PAD; 0: glibc's default), so steps stop faulting the same pages in again: the
    # compiled tutorial step took 647-690 ms against 717-755 (components/allocator.py).
    malloc_top_pad_mb: int = 256
    # Where TensorFlow's CPU tensors come from: "bfc", its own pool, which keeps what it has
    # grown to, or "system", malloc, which maps and unmaps every tensor over 32 MB afresh each
    # step (compiled tutorial step 1.35x, naive 1.57x as fast with bfc; components/allocator.py).
    # Process-wide: run_pipeline.py applies it before TensorFlow starts; the environment's
    # TF_CPU_ALLOCATOR_USE_BFC, when set, wins.
    cpu_allocator: Literal["bfc", "system"] = "bfc"
    # The full training state is saved every this many steps (and at each epoch's end); a
    # killed run resumes from the last save, losing at most this many steps (0: epochs only).
    checkpoint_every_steps: int = 100


@dataclasses.dataclass
class DecodingConfig:
    """How translations are decoded: shared by evaluate and export, so what is measured is
    what is served."""

    # A sentence's output stops after its source length + this many tokens.
    max_extra_tokens: int = 16
    # The `beam_search` signature's beam width and GNMT length-penalty exponent.
    beam_size: int = 4
    length_penalty: float = 0.6


@dataclasses.dataclass
class EvaluateConfig:
    batch_size: int = 256
    # Which served signature the test split is scored with: "greedy" (`serving_default`) or
    # "beam" (`beam_search`, decoding.beam_size and decoding.length_penalty). The other one's
    # scores are in metrics.json too when `score_both` is set.
    search: Literal["greedy", "beam"] = "greedy"
    score_both: bool = False


@dataclasses.dataclass
class ExportConfig:
    # The check in a fresh process translates this many test sentences.
    num_validation_sentences: int = 8
    # Single-sentence requests timed in the fresh process for p50/p95 latency.
    latency_runs: int = 20
    # Push only a model whose test BLEU reaches this.
    min_bleu: float = 0.0
    # Versions kept under serving/<model_name>/ (0: all); older ones are deleted after a push.
    keep_versions: int = 3


@dataclasses.dataclass
class PipelineConfig:
    seed: int = 0
    # Name under <workdir>/serving/ that a model server loads.
    model_name: str = "translator"
    beam: BeamConfig = dataclasses.field(default_factory=BeamConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)


def _check_value(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(hint, value, where)
    if origin is Literal:
        if isinstance(value, bool) and str(value).lower() in typing.get_args(hint):
            value = str(value).lower()  # YAML reads a bare true / false as a boolean
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_check_value(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: unsupported union type in schema")
    if hint is float and isinstance(value, int | str) and not isinstance(value, bool):
        try:
            # YAML 1.1 reads an exponent without a dot (1e3, 1e-1) as a string.
            return float(value)
        except ValueError:
            pass
    # bool is a subclass of int, so an int field must reject True/False explicitly.
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            section = f"section '{where}'" if where else "the top level"
            raise ConfigError(f"unknown key '{key}' in {section} (known: {', '.join(hints)})")
        kwargs[key] = _check_value(value, hints[key], f"{where}.{key}" if where else key)
    return cls(**kwargs)


def _override_value(hint: Any, text: str, assignment: str) -> Any:
    """The value of a `--set` as YAML reads it; a str field takes the text as written."""
    if hint is str:
        # YAML would make 2024, 007, on or ~ a number, a boolean or null.
        return text
    if not text:
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or error
        raise ConfigError(f"--set {assignment}: {text!r} is not a YAML value ({problem})") from None


def _set_override(raw: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE, e.g. train.epochs=20")
    dotted, text = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    cls: Any = PipelineConfig
    node = raw
    for depth, key in enumerate(keys):
        hints = typing.get_type_hints(cls)
        if key not in hints:
            parent = ".".join(keys[:depth]) or "the top level"
            raise ConfigError(f"--set {assignment}: unknown key '{key}' in {parent}")
        if depth == len(keys) - 1:
            node[key] = _override_value(hints[key], text.strip(), assignment)
            return
        cls = hints[key]
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"--set {assignment}: '{key}' is not a section")
        node = node.setdefault(key, {})


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> PipelineConfig:
    """Loads a YAML config, applies `a.b=value` overrides and validates the result."""
    raw: dict = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        raw = _read_yaml(Path(path))
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        _build(PipelineConfig, raw, "")
    except ConfigError as error:
        raise ConfigError(f"{origin}: {error}") from None
    for assignment in overrides:
        _set_override(raw, assignment)
    try:
        config = _build(PipelineConfig, raw, "")
        _check_ranges(config)
        _check_consistency(config)
        return config
    except ConfigError as error:
        where = f"{origin} with --set overrides" if overrides else origin
        raise ConfigError(f"{where}: {error}") from None


@dataclasses.dataclass(frozen=True)
class _Range:
    """The values a numeric key allows: `low` to `high` (None: no upper bound)."""

    low: float
    high: float | None = None
    high_excluded: bool = False
    zero: str = ""  # what 0 means, where it means something special

    def allows(self, value: float) -> bool:
        if value < self.low:
            return False
        if self.high is None:
            return True
        return value < self.high or (value == self.high and not self.high_excluded)

    def advice(self) -> str:
        low = f"{self.low} ({self.zero})" if self.zero else f"{self.low}"
        if self.high is None:
            return f"use {low} or more"
        return f"use {low} to {'less than ' if self.high_excluded else ''}{self.high}"


_COUNT = _Range(1)
_FRACTION = _Range(0, 1)
# At 1 dropout keeps no unit, label smoothing keeps no label, the splits leave train no row.
_RATE = _Range(0, 1, high_excluded=True)

# Every int and float key but train.pack_length, train.pack_target_length and
# train.average_last_epochs, whose range depends on other keys (_check_consistency).
_RANGES = {
    "seed": _Range(0, 2**32 - 1),  # NumPy's seed range (keras.utils.set_random_seed)
    "beam.direct_num_workers": _Range(0, zero="one per CPU core"),
    "data.builtin_pairs": _COUNT,
    "data.source_column": _Range(0),
    "data.target_column": _Range(0),
    "data.max_words": _COUNT,
    "data.max_length_ratio": _Range(1),  # longer side over shorter side
    "data.max_rejected_fraction": _FRACTION,
    "data.split.validation": _RATE,
    "data.split.test": _RATE,
    "data.num_shards": _COUNT,
    # The 4 reserved tokens and at least one piece.
    "tokenizer.source_vocab_size": _Range(5),
    "tokenizer.target_vocab_size": _Range(5),
    "tokenizer.min_count": _Range(0),
    "train.num_layers": _COUNT,
    "train.d_model": _COUNT,
    "train.num_heads": _COUNT,
    "train.dff": _COUNT,
    "train.dropout": _RATE,
    "train.label_smoothing": _RATE,
    "train.steps_per_execution": _COUNT,
    "train.max_length": _Range(3),  # the start and end tokens and one more
    "train.batch_tokens": _COUNT,
    "train.epochs": _COUNT,
    # The schedule's warmup term is infinite at 0, leaving the inverse square root decay.
    "train.warmup_steps": _Range(0, zero="no warmup"),
    "train.shuffle_buffer": _COUNT,  # tf.data needs a buffer; 1 does not shuffle
    "train.num_sample_translations": _Range(0),
    "train.num_bleu_sentences": _Range(0),
    "train.num_attention_images": _Range(0),
    "train.malloc_top_pad_mb": _Range(0, 2047, zero="glibc's default"),
    "train.checkpoint_every_steps": _Range(0, zero="epochs only"),
    "decoding.max_extra_tokens": _Range(0),
    "decoding.beam_size": _COUNT,
    "decoding.length_penalty": _Range(0, zero="no penalty"),
    "evaluate.batch_size": _COUNT,
    "export.num_validation_sentences": _COUNT,
    "export.latency_runs": _COUNT,
    "export.min_bleu": _Range(0, 100),
    "export.keep_versions": _Range(0, zero="keep every version"),
}


def _check_ranges(config: PipelineConfig) -> None:
    """Each numeric key on its own: before any stage runs, not when its stage fails."""
    for dotted, allowed in _RANGES.items():
        value: Any = config
        for key in dotted.split("."):
            value = getattr(value, key)
        if not math.isfinite(value):
            raise ConfigError(f"{dotted}={value}: use a finite number")
        if not allowed.allows(value):
            raise ConfigError(f"{dotted}={value}: {allowed.advice()}")


_ARCHITECTURE = ("num_layers", "d_model", "num_heads", "dff")


def _check_consistency(config: PipelineConfig) -> None:
    """Rules that involve several keys."""
    train, defaults = config.train, TrainConfig()
    if train.preset != "custom":
        clashing = [k for k in _ARCHITECTURE if getattr(train, k) != getattr(defaults, k)]
        if clashing:
            raise ConfigError(
                f"train.preset={train.preset} sets {', '.join(clashing)}: "
                "remove those keys or use train.preset=custom"
            )
    if not 1 <= train.average_last_epochs <= train.epochs:
        raise ConfigError(
            f"train.average_last_epochs={train.average_last_epochs}: use 1 to train.epochs "
            f"({train.epochs})"
        )
    if train.jit_compile == "true" and train.deterministic:
        # Keras turns XLA off under TensorFlow's op determinism, silently but for a warning.
        raise ConfigError(
            "train.jit_compile=true needs train.deterministic: false (Keras does not compile "
            "with XLA while TensorFlow's op determinism is on)"
        )
    if train.pack_length and not 8 <= train.pack_length <= train.max_length:
        raise ConfigError(
            f"train.pack_length={train.pack_length}: use 0 (no packing) or 8 to "
            f"train.max_length ({train.max_length})"
        )
    if train.pack_target_length and not (
        train.pack_length and 8 <= train.pack_target_length <= train.max_length
    ):
        raise ConfigError(
            f"train.pack_target_length={train.pack_target_length}: use 0 (train.pack_length) "
            f"or 8 to train.max_length ({train.max_length}), with train.pack_length set"
        )
    if train.d_model % train.num_heads:
        # Each head gets d_model // num_heads dimensions: the rest would be dropped silently.
        raise ConfigError(
            f"train.num_heads={train.num_heads}: use a divisor of train.d_model ({train.d_model})"
        )
    split = config.data.split
    if split.validation + split.test >= 1:
        raise ConfigError(
            f"data.split.validation + data.split.test = {split.validation + split.test:g}: "
            "use less than 1 (train gets the rest)"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", config.model_name):
        # A directory name under serving/: nothing that climbs out of it or hides in it.
        raise ConfigError(
            f"model_name={config.model_name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if train.share_embeddings and not config.tokenizer.shared_vocab:
        raise ConfigError("train.share_embeddings needs tokenizer.shared_vocab: true")
    tok = config.tokenizer
    if tok.shared_vocab and tok.source_vocab_size != tok.target_vocab_size:
        raise ConfigError(
            "tokenizer.shared_vocab: set source_vocab_size and target_vocab_size to one size"
        )


def to_dict(config: Any) -> dict:
    """A plain, JSON-serializable dict of a config or config section."""
    return dataclasses.asdict(config)


def dump_yaml(config: PipelineConfig, path: Path) -> None:
    """Saves the resolved config so a run can be repeated exactly."""
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
