"""Training callbacks: what TensorBoard shows beyond Keras' own scalars, and progress lines."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras
import numpy as np
import sacrebleu
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from components.records import parse_text_example, shard_paths
from models.translator import Translator
from pipeline.config import TrainConfig


def read_text_pairs(examples: Path, split: str, limit: int) -> list[tuple[str, str]]:
    """The first `limit` (source, target) strings of a split, in file order."""
    pairs: list[tuple[str, str]] = []
    for path in shard_paths(examples, split):
        for record in tf.data.TFRecordDataset(str(path)).take(limit - len(pairs)):
            pairs.append(parse_text_example(record.numpy()))
        if len(pairs) >= limit:
            break
    return pairs


class _OnceAtTrainBegin(keras.callbacks.Callback):
    """Training runs one `fit` per epoch, so `on_train_begin` comes once per epoch: subclasses
    put what belongs once per run in `write_once`."""

    def __init__(self):
        super().__init__()
        self.written = False

    def on_train_begin(self, logs=None):
        if not self.written:
            self.written = True
            self.write_once()

    def write_once(self) -> None:
        raise NotImplementedError


class EpochSummaries(keras.callbacks.Callback):
    """Each epoch: BLEU on fixed validation sentences, sample translations, tokens per second.

    Scalars go to `logs/validation` (`validation_bleu`) and `logs/train`
    (`target_tokens_per_second`); the text table to `logs/samples`.
    """

    def __init__(self, translator: Translator, pairs, cfg: TrainConfig, logdir: Path):
        super().__init__()
        self.translator = translator
        self.pairs = pairs
        self.num_samples = cfg.num_sample_translations
        self.num_bleu = cfg.num_bleu_sentences
        self.writers = {
            name: tf.summary.create_file_writer(str(logdir / name))
            for name in ("samples", "validation", "train")
        }

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.train_seconds = None

    def on_test_begin(self, logs=None):
        # Validation runs inside the epoch; tokens per second count training time only.
        if self.train_seconds is None:
            self.train_seconds = time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.train_seconds or time.perf_counter() - self.started
        step = epoch  # the step Keras' TensorBoard callback gives this epoch's epoch_* scalars
        sources = tf.constant([s for s, _ in self.pairs])
        outputs = [
            t.decode("utf-8") for t in self.translator.translate(sources)["translation"].numpy()
        ]
        references = [t for _, t in self.pairs]
        n = self.num_bleu
        bleu = sacrebleu.corpus_bleu(outputs[:n], [references[:n]]).score if n else 0.0
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


def heatmap(weights: np.ndarray, cell: int = 8) -> np.ndarray:
    """A (T, S) attention matrix as a (T*cell, S*cell, 3) uint8 image: dark blue to yellow."""
    scaled = weights / max(float(weights.max()), 1e-9)
    low, high = np.array([20, 30, 90]), np.array([250, 230, 40])
    rgb = low + scaled[..., None] * (high - low)
    return np.kron(rgb, np.ones((cell, cell, 1))).astype(np.uint8)


class AttentionImages(_OnceAtTrainBegin):
    """Each epoch: cross-attention heatmaps (target tokens x source tokens) per layer.

    Teacher-forced on the reference, averaged over heads, for a few fixed validation pairs;
    rows are target tokens, columns source tokens (listed once in the text summary).
    """

    def __init__(self, tokenizer, pairs, logdir: Path):
        super().__init__()
        self.pairs = pairs
        self.source = [tokenizer.source.tokenize(tf.constant([s])) for s, _ in pairs]
        self.target = [tokenizer.target.tokenize(tf.constant([t])) for _, t in pairs]
        self.labels = [
            (
                tokenizer.source.vocab.numpy()[s.flat_values.numpy()],
                tokenizer.target.vocab.numpy()[t.flat_values.numpy()],
            )
            for s, t in zip(self.source, self.target)
        ]
        self.writer = tf.summary.create_file_writer(str(logdir / "attention"))

    def write_once(self):
        with self.writer.as_default():
            for i, (source, target) in enumerate(self.labels):
                text = (
                    f"rows (target): {' '.join(t.decode() for t in target[:-1])}\n\n"
                    f"columns (source): {' '.join(s.decode() for s in source)}"
                )
                tf.summary.text(f"sentence_{i}/tokens", text, step=0)

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            for i, (source, target) in enumerate(zip(self.source, self.target)):
                source, target = source.to_tensor(), target.to_tensor()
                memory = self.model.encode(source, training=False)
                _, layers = self.model.decode(
                    target[:, :-1], memory, source, training=False, return_attention=True
                )
                for layer, weights in enumerate(layers):
                    image = heatmap(np.asarray(weights)[0].mean(axis=0))
                    tf.summary.image(f"sentence_{i}/layer_{layer}", image[None], step=epoch)
        self.writer.flush()


class HParams(_OnceAtTrainBegin):
    """Records the run's config in TensorBoard's HParams dashboard, so runs can be compared."""

    def __init__(self, hparams: dict, logdir: Path):
        super().__init__()
        # The dashboard takes scalars and strings only.
        self.hparams = {
            k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()
        }
        self.logdir = logdir

    def write_once(self):
        with tf.summary.create_file_writer(str(self.logdir)).as_default():
            hparams_api.hparams(self.hparams)


class GradientNorm(keras.callbacks.Callback):
    """The global gradient norm (`NormTrackingAdam.gradient_norm`) in TensorBoard.

    Each step's value goes to `logs/train` as `gradient_norm` (step = optimizer step; with
    `steps_per_execution` > 1 the last step of each execution), and the epoch's mean into the
    epoch logs as `gradient_norm`, so Keras' TensorBoard callback and the history have it.
    Keep it before the TensorBoard callback.
    """

    def __init__(self, logdir: Path):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(logdir / "train"))

    def _optimizer(self):
        optimizer = self.model.optimizer
        return getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling

    def on_epoch_begin(self, epoch, logs=None):
        self.total, self.count = 0.0, 0

    def get_state(self) -> dict:
        """The epoch's running sum, for a mid-epoch training state."""
        return {"total": self.total, "count": self.count}

    def set_state(self, state: dict) -> None:
        self.total, self.count = state["total"], state["count"]

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self._optimizer()
        norm = float(optimizer.gradient_norm.numpy())
        self.total += norm
        self.count += 1
        with self.writer.as_default():
            tf.summary.scalar("gradient_norm", norm, step=int(optimizer.iterations.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        self.writer.flush()
        if logs is not None and self.count:
            logs["gradient_norm"] = self.total / self.count


class ModelGraph(_OnceAtTrainBegin):
    """The model's forward graph (source and target ids in, logits out) in TensorBoard's
    Graphs dashboard, written once to `logs/train`."""

    def __init__(self, logdir: Path):
        super().__init__()
        self.logdir = logdir

    def write_once(self):
        model = self.model
        spec = tf.TensorSpec([None, None], tf.int64)

        @tf.function(input_signature=[spec, spec])
        def forward(source, target_in):
            return model({"source": source, "target_in": target_in}, training=False)

        graph = forward.get_concrete_function().graph
        with tf.summary.create_file_writer(str(self.logdir / "train")).as_default():
            tf.summary.graph(graph)


class StepProgress(keras.callbacks.Callback):
    """Progress lines: one every `interval` seconds inside an epoch, so long epochs show they
    are moving, and one per finished epoch with its logs. Keep it last."""

    def __init__(self, epochs: int, interval: float = 30.0):
        super().__init__()
        self.epochs = epochs
        self.interval = interval

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.started = self.last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            rate = (batch + 1) / (now - self.started)
            loss = float((logs or {}).get("loss", float("nan")))
            print(
                f"  epoch {self.epoch + 1} step {batch + 1}: loss {loss:.4f} ({rate:.2f} steps/s)",
                file=sys.stderr,
                flush=True,
            )

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        shown = " ".join(f"{k} {float(v):.4g}" for k, v in sorted((logs or {}).items()))
        print(
            f"epoch {epoch + 1}/{self.epochs} ({seconds:.1f} s): {shown}",
            file=sys.stderr,
            flush=True,
        )
