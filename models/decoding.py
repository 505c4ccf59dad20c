"""Greedy decoding inside the graph (`tf.while_loop`), so it runs in a SavedModel."""

from __future__ import annotations

import tensorflow as tf

PAD_ID, START_ID, END_ID = 0, 2, 3


def greedy_decode(model, source: tf.Tensor, max_length: tf.Tensor) -> tf.Tensor:
    """Arg-max decoding of a batch.

    Args:
        model: a `Transformer` with `encode` and `decode`.
        source: (batch, S) int64 ids, padded with 0.
        max_length: scalar, the longest output including the start token.

    Returns:
        (batch, L) int64 ids, starting with the start token; after a sentence's end token
        every position is padding.
    """
    batch = tf.shape(source)[0]
    memory = model.encode(source, training=False)
    tokens = tf.fill([batch, 1], tf.constant(START_ID, tf.int64))
    done = tf.zeros([batch], tf.bool)

    def not_finished(tokens, done):
        return tf.logical_and(tf.shape(tokens)[1] < max_length, tf.logical_not(tf.reduce_all(done)))

    def step(tokens, done):
        # Uncached: the decoder reruns over the whole prefix and we keep its last position.
        logits = model.decode(tokens, memory, source, training=False)
        next_token = tf.argmax(logits[:, -1, :], axis=-1, output_type=tf.int64)
        next_token = tf.where(done, tf.constant(PAD_ID, tf.int64), next_token)
        tokens = tf.concat([tokens, next_token[:, None]], axis=1)
        return tokens, tf.logical_or(done, tf.equal(next_token, END_ID))

    tokens, _ = tf.while_loop(
        not_finished,
        step,
        (tokens, done),
        shape_invariants=(tf.TensorShape([None, None]), tf.TensorShape([None])),
    )
    return tokens
