"""Train stage: a Keras Transformer on the token-id TFRecords, with TensorBoard and checkpoints."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import keras
import tensorflow as tf

from components.allocator import bfc_cpu_allocator_active, keep_freed_memory
from components.checkpointing import (
    EpochWeights,
    StepCheckpoint,
    average_epoch_weights,
    build_metrics,
    epoch_seed,
    load_state,
    restore_weights,
)
from components.distribute import choose_precision, choose_strategy, set_precision
from components.input_pipeline import load_token_pairs, make_batches
from components.train_callbacks import (
    AttentionImages,
    EpochSummaries,
    GradientNorm,
    HParams,
    ModelGraph,
    StepProgress,
    read_text_pairs,
)
from models.compiled import use_compiled_paths
from models.losses import MaskedAccuracy, MaskedCrossEntropy, MaskedPerplexity, TargetTokens
from models.optimizers import NormTrackingAdam
from models.presets import preset_architecture
from models.schedules import InverseSqrtSchedule
from models.tokenizer import TranslationTokenizer
from models.transformer import Transformer
from models.translator import Translator
from pipeline.artifacts import write_json
from pipeline.config import TrainConfig

MODEL_FILE = "model.keras"
# The step-level training state (components/checkpointing.py) inside the artifact.
CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass
class TrainResult:
    epochs: int
    parameters: int
    final: dict[str, float]
    seconds: float
    # With train.average_last_epochs > 1: which epochs, and the averaged model's validation
    # metrics (`final` holds the last epoch's own).
    averaged: dict | None = None
    # Whether the training step was compiled with XLA (train.jit_compile, as Keras resolved it).
    jit_compile: bool = False
    # Where TensorFlow's CPU tensors came from: "bfc" (its pool) or "system" (malloc).
    cpu_allocator: str = "system"


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
        optimizer=NormTrackingAdam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9),
        loss=MaskedCrossEntropy(cfg.label_smoothing),
        metrics=[MaskedAccuracy(), MaskedPerplexity(), TargetTokens()],
        jit_compile=jit,
        steps_per_execution=cfg.steps_per_execution,
    )
    model.build()
    # XLA's CPU backend is slow at random ops and leading-axis reductions: models.compiled.
    use_compiled_paths(model, bool(model.jit_compile))
    return model


def _callbacks(cfg: TrainConfig, model, tokenizer, examples: Path, out: Path, seed: int, resume):
    logdir = out / "logs"
    wanted = (cfg.num_bleu_sentences, cfg.num_sample_translations, cfg.num_attention_images, 1)
    pairs = read_text_pairs(examples, "validation", max(wanted))
    translator = Translator(tokenizer, model)
    hparams = {**dataclasses.asdict(cfg), **architecture(cfg), "seed": seed}
    # Order matters at epoch end: GradientNorm adds its mean to the logs before TensorBoard
    # records them; the checkpoint (whose history becomes history.json) and the progress line
    # come last so they see everything, validation BLEU included.
    gradient_norm = GradientNorm(logdir)
    epoch_weights = (
        [EpochWeights(out / CHECKPOINT_DIR, cfg.epochs, cfg.average_last_epochs)]
        if cfg.average_last_epochs > 1
        else []
    )
    return [
        ModelGraph(logdir),
        gradient_norm,
        keras.callbacks.TensorBoard(str(logdir), write_graph=False, profile_batch=0),
        EpochSummaries(translator, pairs, cfg, logdir),
        AttentionImages(tokenizer, pairs[: cfg.num_attention_images], logdir),
        HParams(hparams, logdir),
        *epoch_weights,
        StepCheckpoint(
            out / CHECKPOINT_DIR, cfg.checkpoint_every_steps, resume, stateful=[gradient_norm]
        ),
        StepProgress(cfg.epochs),
    ]


def train(
    cfg: TrainConfig, *, tokenized: Path, examples: Path, out: Path, seed: int
) -> TrainResult:
    """Trains on `tokenized` (tokenize artifact), samples from `examples` (ingest artifact)."""
    keep_freed_memory(cfg.malloc_top_pad_mb)
    # Chosen by TensorFlow at the process's first tensor: run_pipeline.py asks before that.
    allocator = "bfc" if bfc_cpu_allocator_active() else "system"
    if allocator != cfg.cpu_allocator:
        print(
            f"train.cpu_allocator is {cfg.cpu_allocator!r}, but TensorFlow's CPU tensors come "
            f"from the {allocator!r} allocator: it was chosen when this process made its first "
            "tensor (set train.cpu_allocator before TensorFlow starts, or "
            "TF_CPU_ALLOCATOR_USE_BFC in the environment; where oneDNN is on, its allocator, "
            "a BFC pool, serves CPU tensors whatever the key says: TF_ENABLE_ONEDNN_OPTS=0)",
            file=sys.stderr,
            flush=True,
        )
    keras.utils.set_random_seed(seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    tokenizer = TranslationTokenizer.from_directory(tokenized / "vocab")
    strategy = choose_strategy(cfg.strategy)
    set_precision(choose_precision(cfg.precision, strategy))
    with strategy.scope():
        model = build_model(cfg, tokenizer.source_vocab_size, tokenizer.target_vocab_size)
    pairs = load_token_pairs(tokenized, "train", cfg.max_length)
    validation_data = make_batches(
        load_token_pairs(tokenized, "validation", cfg.max_length), cfg, shuffle_seed=None
    )
    # A run killed earlier left its state in this (resumable) staging directory.
    resume = load_state(out / CHECKPOINT_DIR)
    callbacks = _callbacks(cfg, model, tokenizer, examples, out, seed, resume)
    checkpoint = next(c for c in callbacks if isinstance(c, StepCheckpoint))
    start = checkpoint.position
    if resume is not None and resume.has_metrics:
        with strategy.scope():
            build_metrics(model, next(iter(validation_data)))
    if resume is not None:
        print(
            f"resuming from {resume.path}: epoch {start.epoch + 1}, "
            f"{start.step_in_epoch} batches done in it (step {start.global_step})",
            file=sys.stderr,
            flush=True,
        )
    # Bucketed datasets have no known length; Keras warns at the end of each pass over them.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    started = time.perf_counter()
    # One `fit` per epoch: each epoch's batch order depends only on (seed, epoch), so a
    # resumed run skips exactly the batches the killed one had trained on.
    for epoch in range(start.epoch, cfg.epochs):
        data = make_batches(pairs, cfg, shuffle_seed=epoch_seed(seed, epoch))
        if epoch == start.epoch and start.step_in_epoch:
            data = data.skip(start.step_in_epoch)
        model.fit(
            data,
            validation_data=validation_data,
            initial_epoch=epoch,
            epochs=epoch + 1,
            callbacks=callbacks,
            verbose=0,
        )
    if resume is not None and start.epoch >= cfg.epochs:
        # Killed after the last epoch's save: only the weights and optimizer are needed.
        restore_weights(resume, model)
    averaged = None
    if cfg.average_last_epochs > 1:
        epochs = list(range(cfg.epochs - cfg.average_last_epochs + 1, cfg.epochs + 1))
        average_epoch_weights(out / CHECKPOINT_DIR, model, epochs)
        scores = model.evaluate(validation_data, verbose=0, return_dict=True)
        averaged = {"epochs": epochs, **{f"val_{k}": float(v) for k, v in scores.items()}}
        print(
            f"final weights: the mean of epochs {epochs[0]}-{epochs[-1]} "
            f"(validation loss {averaged['val_loss']:.4f}, last epoch's "
            f"{checkpoint.position.history['val_loss'][-1]:.4f})",
            file=sys.stderr,
            flush=True,
        )
    seconds = time.perf_counter() - started
    model.save(out / MODEL_FILE)
    history = checkpoint.position.history
    final = {k: v[-1] for k, v in history.items()}
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    result = TrainResult(
        cfg.epochs,
        int(model.count_params()),
        final,
        round(seconds, 2),
        averaged,
        bool(model.jit_compile),
        allocator,
    )
    write_json(out / "train_result.json", dataclasses.asdict(result))
    return result
