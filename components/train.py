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

from components.input_pipeline import load_token_pairs, make_batches
from components.records import parse_text_example, shard_paths
from models.losses import MaskedAccuracy, MaskedCrossEntropy
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


def build_model(cfg: TrainConfig, source_vocab_size: int, target_vocab_size: int) -> Transformer:
    """The Transformer of this config, built and compiled with the paper's schedule."""
    model = Transformer(
        source_vocab_size=source_vocab_size,
        target_vocab_size=target_vocab_size,
        num_layers=cfg.num_layers,
        d_model=cfg.d_model,
        num_heads=cfg.num_heads,
        dff=cfg.dff,
        dropout=cfg.dropout,
        max_length=cfg.max_length,
        positional=cfg.positional,
        norm_first=cfg.norm_first,
    )
    schedule = InverseSqrtSchedule(cfg.d_model, cfg.warmup_steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9),
        loss=MaskedCrossEntropy(cfg.label_smoothing),
        metrics=[MaskedAccuracy()],
        jit_compile=False,
    )
    model.build()
    return model


def read_text_pairs(examples: Path, split: str, limit: int) -> list[tuple[str, str]]:
    """The first `limit` (source, target) strings of a split, in file order."""
    pairs = []
    for path in shard_paths(examples, split):
        for record in tf.data.TFRecordDataset(str(path)).take(limit - len(pairs)):
            pairs.append(parse_text_example(record.numpy()))
        if len(pairs) >= limit:
            break
    return pairs


class SampleTranslations(keras.callbacks.Callback):
    """Writes the translations of fixed validation sentences to TensorBoard text each epoch."""

    def __init__(self, translator: Translator, pairs: list[tuple[str, str]], logdir: Path):
        super().__init__()
        self.translator = translator
        self.pairs = pairs
        self.writer = tf.summary.create_file_writer(str(logdir / "samples"))

    def on_epoch_end(self, epoch, logs=None):
        sources = tf.constant([s for s, _ in self.pairs])
        outputs = self.translator.translate(sources)["translation"].numpy()
        rows = ["| source | reference | model |", "|---|---|---|"]
        for (source, reference), output in zip(self.pairs, outputs):
            rows.append(f"| {source} | {reference} | {output.decode('utf-8')} |")
        with self.writer.as_default():
            tf.summary.text("sample_translations", "\n".join(rows), step=epoch + 1)
        self.writer.flush()


def _callbacks(cfg: TrainConfig, model, tokenizer, examples: Path, out: Path) -> list:
    logdir = out / "logs"
    samples = read_text_pairs(examples, "validation", cfg.num_sample_translations)
    translator = Translator(tokenizer, model)
    return [
        keras.callbacks.TensorBoard(str(logdir), write_graph=False, profile_batch=0),
        SampleTranslations(translator, samples, logdir),
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
        callbacks=_callbacks(cfg, model, tokenizer, examples, out),
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
