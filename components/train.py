"""Train stage: a Keras Transformer on the token-id TFRecords, with TensorBoard and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from pathlib import Path

import keras
import tensorflow as tf

from components.distribute import choose_precision, choose_strategy, set_precision
from components.input_pipeline import load_token_pairs, make_batches
from components.train_callbacks import (
    AttentionImages,
    EpochSummaries,
    HParams,
    StepProgress,
    read_text_pairs,
)
from models.losses import MaskedAccuracy, MaskedCrossEntropy, MaskedPerplexity, TargetTokens
from models.presets import preset_architecture
from models.schedules import InverseSqrtSchedule
from models.tokenizer import TranslationTokenizer
from models.transformer import Transformer
from models.translator import Translator
from pipeline.artifacts import write_json
from pipeline.config import TrainConfig

MODEL_FILE = "model.keras"


@dataclasses.dataclass
class TrainResult:
    epochs: int
    parameters: int
    final: dict[str, float]
    seconds: float


def architecture(cfg: TrainConfig) -> dict[str, int]:
    """num_layers, d_model, num_heads and dff: from the preset, or the config's own fields."""
    if cfg.preset != "custom":
        return preset_architecture(cfg.preset)
    return {
        "num_layers": cfg.num_layers,
        "d_model": cfg.d_model,
        "num_heads": cfg.num_heads,
        "dff": cfg.dff,
    }


def build_model(cfg: TrainConfig, source_vocab_size: int, target_vocab_size: int) -> Transformer:
    """The Transformer of this config, built and compiled with the paper's schedule.

    Call it inside the training strategy's scope so the variables are placed by it.
    """
    arch = architecture(cfg)
    model = Transformer(
        source_vocab_size=source_vocab_size,
        target_vocab_size=target_vocab_size,
        dropout=cfg.dropout,
        max_length=cfg.max_length,
        positional=cfg.positional,
        norm_first=cfg.norm_first,
        share_embeddings=cfg.share_embeddings,
        **arch,
    )
    schedule = InverseSqrtSchedule(arch["d_model"], cfg.warmup_steps)
    jit = {"auto": "auto", "true": True, "false": False}[cfg.jit_compile]
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9),
        loss=MaskedCrossEntropy(cfg.label_smoothing),
        metrics=[MaskedAccuracy(), MaskedPerplexity(), TargetTokens()],
        jit_compile=jit,
        steps_per_execution=cfg.steps_per_execution,
    )
    model.build()
    return model


def _callbacks(cfg: TrainConfig, model, tokenizer, examples: Path, out: Path, seed: int) -> list:
    logdir = out / "logs"
    wanted = (cfg.num_bleu_sentences, cfg.num_sample_translations, cfg.num_attention_images, 1)
    pairs = read_text_pairs(examples, "validation", max(wanted))
    translator = Translator(tokenizer, model)
    hparams = {**dataclasses.asdict(cfg), **architecture(cfg), "seed": seed}
    return [
        keras.callbacks.TensorBoard(str(logdir), write_graph=False, profile_batch=0),
        EpochSummaries(translator, pairs, cfg, logdir),
        AttentionImages(tokenizer, pairs[: cfg.num_attention_images], logdir),
        HParams(hparams, logdir),
        StepProgress(),
        # Epoch-level resume: a killed run restarted into the same staging dir continues here.
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(out / "checkpoints" / "latest.weights.h5"), save_weights_only=True
        ),
    ]


def train(
    cfg: TrainConfig, *, tokenized: Path, examples: Path, out: Path, seed: int
) -> TrainResult:
    """Trains on `tokenized` (tokenize artifact), samples from `examples` (ingest artifact)."""
    keras.utils.set_random_seed(seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    tokenizer = TranslationTokenizer.from_directory(tokenized / "vocab")
    strategy = choose_strategy(cfg.strategy)
    set_precision(choose_precision(cfg.precision, strategy))
    with strategy.scope():
        model = build_model(cfg, tokenizer.source_vocab_size, tokenizer.target_vocab_size)
    train_data = make_batches(
        load_token_pairs(tokenized, "train", cfg.max_length), cfg, shuffle_seed=seed
    )
    validation_data = make_batches(
        load_token_pairs(tokenized, "validation", cfg.max_length), cfg, shuffle_seed=None
    )
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    # Bucketed datasets have no known length; Keras warns at the end of each pass over them.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    started = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=cfg.epochs,
        callbacks=_callbacks(cfg, model, tokenizer, examples, out, seed),
        verbose=2,
    )
    seconds = time.perf_counter() - started
    model.save(out / MODEL_FILE)
    shutil.rmtree(out / "backup", ignore_errors=True)
    final = {k: float(v[-1]) for k, v in history.history.items()}
    (out / "history.json").write_text(json.dumps(history.history, indent=2) + "\n")
    result = TrainResult(cfg.epochs, int(model.count_params()), final, round(seconds, 2))
    write_json(out / "train_result.json", dataclasses.asdict(result))
    return result
