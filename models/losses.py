"""Loss and accuracy over target tokens that ignore padding (id 0)."""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

PAD_ID = 0


class LogitStats(NamedTuple):
    """Per position (the labels' shape): what the loss and the metrics read from the logits."""

    lse: object  # log-sum-exp of the logits
    true_logit: object  # the label's logit
    row_max: object  # the largest logit


def token_log_stats(y_true, logits):
    """Per position: log-sum-exp of the logits, the true token's logit, and the largest logit.

    The loss and the metrics take what they need from these, so when one compiled step runs
    them all, the common subexpressions merge and each pass over the (positions x vocabulary)
    logits runs once.
    """
    top = ops.max(logits, axis=-1, keepdims=True)
    row_max = ops.squeeze(top, -1)
    lse = row_max + ops.log(ops.sum(ops.exp(logits - top), axis=-1))
    ids = ops.expand_dims(ops.cast(y_true, "int32"), -1)
    true_logit = ops.squeeze(ops.take_along_axis(logits, ids, axis=-1), -1)
    return lse, true_logit, row_max


def smoothed_cross_entropy(y_true, logits, label_smoothing: float = 0.0):
    """Per-position cross-entropy against the label-smoothed target distribution.

    lse - (1 - e) * logit[true] - e * mean(logits), which is -sum(smoothed * log_softmax), with
    its gradient written out (softmax - smoothed, times the upstream gradient): one pass over
    the logits instead of the several autodiff makes through log_softmax.
    """
    eps = float(label_smoothing)

    @ops.custom_gradient
    def cross_entropy(logits):
        lse, true_logit, _ = token_log_stats(y_true, logits)
        per_token = lse - (1.0 - eps) * true_logit
        if eps:
            per_token = per_token - eps * ops.mean(logits, axis=-1)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            vocab = ops.shape(logits)[-1]
            softmax = ops.exp(logits - ops.expand_dims(lse, -1))
            target = ops.one_hot(ops.cast(y_true, "int32"), vocab, dtype=logits.dtype)
            target = target * (1.0 - eps) + eps / ops.cast(vocab, logits.dtype)
            return ops.expand_dims(upstream, -1) * (softmax - target)

        return per_token, grad

    return cross_entropy(logits)


def projected_cross_entropy(features, matrix, bias, y_true, label_smoothing=0.0, chunks=16):
    """The masked mean cross-entropy of `features @ matrix + bias` against `y_true`, and the
    logits' `LogitStats`, without holding the (positions x vocabulary) logits. TensorFlow only.

    `features` is (..., d), `matrix` (d, vocab), `bias` (vocab,), `y_true` (...) ids with 0 for
    padding. The value is what `MaskedCrossEntropy` gives on the logits (a mean over the real
    tokens). The positions are taken in `chunks` blocks (the last padded); each block's logits
    are made, reduced and turned into their gradient at once, in the forward pass, so that at
    the `tutorial` preset's 4,096 positions x 8,000 tokens the 131 MB logits and their gradient
    never leave a block of about 8 MB. The gradient is `upstream` times the one computed here;
    the stats carry none (the metrics read them).
    """
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python import xla

    eps = float(label_smoothing)
    features = tf.cast(features, tf.float32)
    matrix = tf.cast(tf.convert_to_tensor(matrix), tf.float32)
    bias = tf.cast(tf.convert_to_tensor(bias), tf.float32)
    labels = tf.cast(y_true, tf.int32)
    label_shape = tf.shape(labels)
    depth = tf.shape(features)[-1]

    @tf.custom_gradient
    def fused(rows, matrix, bias):
        labels_flat = tf.reshape(labels, [-1])
        positions = tf.shape(labels_flat)[0]
        block = (positions + chunks - 1) // chunks
        extra = block * chunks - positions
        vocab = tf.shape(matrix)[1]
        # The bias as one more row of the matrix, the rows extended by a column of ones.
        rows_ones = tf.concat([rows, tf.ones_like(rows[:, :1])], axis=1)
        rows_ones = tf.pad(rows_ones, [[0, extra], [0, 0]])
        labels_padded = tf.pad(labels_flat, [[0, extra]])
        weights = tf.concat([matrix, bias[None, :]], axis=0)  # (d + 1, vocab)
        mask = tf.cast(tf.not_equal(labels_padded, PAD_ID), tf.float32)
        scale = mask / tf.maximum(tf.reduce_sum(mask), 1.0)  # each real token's share
        if eps:
            mean_column = tf.reduce_mean(weights, axis=1)  # mean logit = rows_ones @ this
        rows_blocks = tf.reshape(rows_ones, [chunks, block, depth + 1])
        label_blocks = tf.reshape(labels_padded, [chunks, block])
        scale_blocks = tf.reshape(scale, [chunks, block])
        stats, row_grads, weight_grad, losses = [], [], None, []
        for i in range(chunks):
            x, ids, share = rows_blocks[i], label_blocks[i], scale_blocks[i]
            logits = tf.matmul(x, weights)  # (block, vocab)
            top = tf.reduce_max(logits, axis=1)
            exp = tf.exp(logits - top[:, None])
            total = tf.reduce_sum(exp, axis=1)
            lse = top + tf.math.log(total)
            true_logit = tf.gather(logits, ids[:, None], axis=1, batch_dims=1)[:, 0]
            per_token = lse - (1.0 - eps) * true_logit
            if eps:
                per_token -= eps * tf.linalg.matvec(x, mean_column)
            losses.append(tf.reduce_sum(per_token * share))
            stats.append(tf.stack([lse, true_logit, top]))
            # d loss / d logits: (softmax - smoothed one-hot) times the token's share.
            target = tf.one_hot(ids, vocab, on_value=1.0 - eps, off_value=0.0)
            if eps:
                target += eps / tf.cast(vocab, tf.float32)
            grad = (exp / total[:, None] - target) * share[:, None]
            row_grads.append(tf.matmul(grad, matrix, transpose_b=True))
            # A transposed copy held apart from the product (an optimization barrier): XLA on a
            # CPU runs products that contract their first operand's rows at a third the speed.
            (x_t,) = xla.optimization_barrier(tf.transpose(x))
            part = tf.matmul(x_t, grad)  # (d + 1, vocab)
            weight_grad = part if weight_grad is None else weight_grad + part
        loss = tf.add_n(losses)
        stats = tf.concat(stats, axis=1)[:, :positions]  # (3, positions)
        d_rows = tf.concat(row_grads, axis=0)[:positions]

        def grad_fn(upstream, *unused_stats_upstream):
            return upstream * d_rows, upstream * weight_grad[:-1], upstream * weight_grad[-1]

        return (loss, stats), grad_fn

    loss, stats = fused(tf.reshape(features, [-1, depth]), matrix, bias)
    stats = tf.stop_gradient(stats)
    lse, true_logit, row_max = (tf.reshape(stats[i], label_shape) for i in range(3))
    return loss, LogitStats(lse, true_logit, row_max)


@keras.saving.register_keras_serializable(package="translation")
class MaskedCrossEntropy(keras.losses.Loss):
    """Mean token cross-entropy over non-padding positions, with optional label smoothing."""

    def __init__(self, label_smoothing=0.0, name="masked_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        per_token = smoothed_cross_entropy(y_true, y_pred, self.label_smoothing)
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), per_token.dtype)
        # Per-position values whose plain mean (Keras' reduction) is the mean over real tokens.
        # Returning per-position values, not a scalar, keeps Keras' scaling across replicas.
        size = ops.cast(ops.size(mask), per_token.dtype)
        return per_token * mask * (size / ops.maximum(ops.sum(mask), 1.0))

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="translation")
class MaskedAccuracy(keras.metrics.Metric):
    """Token accuracy over an epoch, weighted by tokens (not by batch), padding ignored.

    A token counts as right when its logit is the largest: compared with the row maximum rather
    than through an argmax, which XLA's CPU backend runs as a slow two-output reduction (24 ms of
    the tutorial preset's compiled step at 4,096 target positions). The one difference: a logit
    tied with another for the maximum counts as right, where argmax would pick the lower id.
    """

    def __init__(self, name="masked_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable((), initializer="zeros", name="correct")
        self.total = self.add_variable((), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.update_from_stats(y_true, LogitStats(*token_log_stats(y_true, y_pred)))

    def update_from_stats(self, y_true, stats: LogitStats):
        """The update from the logits' stats (the fused loss's, `projected_cross_entropy`)."""
        mask = ops.not_equal(y_true, PAD_ID)
        correct = ops.logical_and(ops.greater_equal(stats.true_logit, stats.row_max), mask)
        self.correct.assign_add(ops.sum(ops.cast(correct, "float32")))
        self.total.assign_add(ops.sum(ops.cast(mask, "float32")))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)


@keras.saving.register_keras_serializable(package="translation")
class MaskedPerplexity(keras.metrics.Metric):
    """exp of the mean token cross-entropy over an epoch, without label smoothing."""

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total_loss = self.add_variable((), initializer="zeros", name="total_loss")
        self.total = self.add_variable((), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.update_from_stats(y_true, LogitStats(*token_log_stats(y_true, y_pred)))

    def update_from_stats(self, y_true, stats: LogitStats):
        per_token = stats.lse - stats.true_logit
        mask = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
        self.total_loss.assign_add(ops.sum(ops.cast(per_token, "float32") * mask))
        self.total.assign_add(ops.sum(mask))

    def result(self):
        return ops.exp(self.total_loss / ops.maximum(self.total, 1.0))


@keras.saving.register_keras_serializable(package="translation")
class TargetTokens(keras.metrics.Metric):
    """Non-padding target tokens seen in the epoch (tokens per second = this / epoch time)."""

    def __init__(self, name="target_tokens", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.update_from_stats(y_true, None)

    def update_from_stats(self, y_true, stats: LogitStats | None):
        self.count.assign_add(ops.sum(ops.cast(ops.not_equal(y_true, PAD_ID), "float32")))

    def result(self):
        # A copy: Keras keeps the result in the epoch logs, and the variable itself would
        # change under them when validation reuses this metric.
        return ops.convert_to_tensor(self.count) + 0.0
