"""Training callbacks: what TensorBoard shows beyond Keras' own scalars, and progress lines."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import sacrebleu
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from components.records import parse_text_example, shard_paths
from models.translator import Translator


def read_text_pairs(examples: Path, split: str, limit: int) -> list[tuple[str, str]]:
    """The first `limit` (source, target) strings of a split, in file order."""
    pairs: list[tuple[str, str]] = []
    for path in shard_paths(examples, split):
        for record in tf.data.TFRecordDataset(str(path)).take(limit - len(pairs)):
            pairs.append(parse_text_example(record.numpy()))
        if len(pairs) >= limit:
            break
    return pairs


class EpochSummaries(keras.callbacks.Callback):
    """Each epoch: BLEU on fixed validation sentences, sample translations, tokens per second.

    Scalars go to `logs/validation` (`validation_bleu`) and `logs/train`
    (`target_tokens_per_second`); the text table to `logs/samples`.
    """

    def __init__(self, translator: Translator, pairs, num_samples: int, logdir: Path):
        super().__init__()
        self.translator = translator
        self.pairs = pairs
        self.num_samples = num_samples
        self.writers = {
            name: tf.summary.create_file_writer(str(logdir / name))
            for name in ("samples", "validation", "train")
        }

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started  # before decoding, which is not training
        step = epoch + 1
        sources = tf.constant([s for s, _ in self.pairs])
        outputs = [
            t.decode("utf-8") for t in self.translator.translate(sources)["translation"].numpy()
        ]
        references = [t for _, t in self.pairs]
        bleu = sacrebleu.corpus_bleu(outputs, [references]).score
        rows = ["| source | reference | model |", "|---|---|---|"]
        for (source, reference), output in list(zip(self.pairs, outputs))[: self.num_samples]:
            rows.append(f"| {source} | {reference} | {output} |")
        with self.writers["samples"].as_default():
            tf.summary.text("sample_translations", "\n".join(rows), step=step)
        with self.writers["validation"].as_default():
            tf.summary.scalar("validation_bleu", bleu, step=step)
        tokens = (logs or {}).get("target_tokens", 0.0)
        with self.writers["train"].as_default():
            tf.summary.scalar("target_tokens_per_second", tokens / max(seconds, 1e-9), step=step)
        for writer in self.writers.values():
            writer.flush()
        if logs is not None:
            logs["validation_bleu"] = bleu


class HParams(keras.callbacks.Callback):
    """Records the run's config in TensorBoard's HParams dashboard, so runs can be compared."""

    def __init__(self, hparams: dict, logdir: Path):
        super().__init__()
        # The dashboard takes scalars and strings only.
        self.hparams = {
            k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()
        }
        self.logdir = logdir

    def on_train_begin(self, logs=None):
        with tf.summary.create_file_writer(str(self.logdir)).as_default():
            hparams_api.hparams(self.hparams)


class StepProgress(keras.callbacks.Callback):
    """A line every `interval` seconds inside an epoch, so long epochs show they are moving."""

    def __init__(self, interval: float = 30.0):
        super().__init__()
        self.interval = interval

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.started = self.last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            rate = (batch + 1) / (now - self.started)
            loss = (logs or {}).get("loss", float("nan"))
            print(
                f"  epoch {self.epoch + 1} step {batch + 1}: loss {loss:.4f} ({rate:.2f} steps/s)",
                flush=True,
            )
