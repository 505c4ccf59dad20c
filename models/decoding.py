"""Decoding inside the graph (`tf.while_loop`), so it runs in a SavedModel.

Three decoders with one contract: (batch, S) source ids in, (batch, L) target ids out (start
token first, padding after a sentence's end token) plus each output's log-probability.
- `greedy_decode`: no cache; reruns the decoder over the whole prefix each step (the baseline).
- `cached_greedy_decode`: a key/value cache per layer; one position per step.
- `beam_search`: batched beam search over the same cache.
"""

from __future__ import annotations

import tensorflow as tf

PAD_ID, START_ID, END_ID = 0, 2, 3
_NEG = -1e9  # a finite "minus infinity": sums of it never turn into NaN


def _set_column(tokens: tf.Tensor, index, values: tf.Tensor) -> tf.Tensor:
    column = tf.equal(tf.range(tf.shape(tokens)[1]), index)[None, :]
    return tf.where(column, values[:, None], tokens)


def _log_probs(logits: tf.Tensor) -> tf.Tensor:
    """Log-softmax with padding and start ruled out: neither may appear inside an output."""
    vocab = tf.range(tf.shape(logits)[-1])
    never = tf.logical_or(tf.equal(vocab, PAD_ID), tf.equal(vocab, START_ID))
    return tf.nn.log_softmax(tf.where(never, _NEG, logits))


def _pick(log_probs: tf.Tensor, tokens: tf.Tensor) -> tf.Tensor:
    return tf.gather(log_probs, tokens, batch_dims=1)


def _row_limits(limits, batch, max_length):
    if limits is None:
        return tf.fill([batch], tf.cast(max_length, tf.int32))
    return tf.cast(limits, tf.int32)


def greedy_decode(model, source, max_length, limits=None) -> tuple[tf.Tensor, tf.Tensor]:
    """Uncached arg-max decoding; returns (ids (batch, <= max_length), log-probabilities).

    `limits` (batch,) caps each sentence's output length (start token included), so a
    sentence's translation does not depend on the other sentences in its batch.
    """
    batch = tf.shape(source)[0]
    limits = _row_limits(limits, batch, max_length)
    memory = model.encode(source, training=False)
    tokens = tf.fill([batch, 1], tf.constant(START_ID, tf.int64))
    done = tf.zeros([batch], tf.bool)
    scores = tf.zeros([batch], tf.float32)

    def not_finished(tokens, done, scores):
        return tf.logical_and(tf.shape(tokens)[1] < max_length, tf.logical_not(tf.reduce_all(done)))

    def step(tokens, done, scores):
        done = tf.logical_or(done, tf.shape(tokens)[1] >= limits)
        logits = model.decode(tokens, memory, source, training=False)[:, -1, :]
        log_probs = _log_probs(logits)
        next_token = tf.argmax(log_probs, axis=-1, output_type=tf.int64)
        scores += tf.where(done, 0.0, _pick(log_probs, next_token))
        next_token = tf.where(done, tf.constant(PAD_ID, tf.int64), next_token)
        tokens = tf.concat([tokens, next_token[:, None]], axis=1)
        return tokens, tf.logical_or(done, tf.equal(next_token, END_ID)), scores

    tokens, _, scores = tf.while_loop(
        not_finished,
        step,
        (tokens, done, scores),
        shape_invariants=(
            tf.TensorShape([None, None]),
            tf.TensorShape([None]),
            tf.TensorShape([None]),
        ),
    )
    return tokens, scores


def cached_greedy_decode(model, source, max_length, limits=None) -> tuple[tf.Tensor, tf.Tensor]:
    """Arg-max decoding with a key/value cache: the same tokens as `greedy_decode`."""
    batch = tf.shape(source)[0]
    limits = _row_limits(limits, batch, max_length)
    cross, caches = model.start_decoding(source, max_length)
    start = tf.fill([batch], tf.constant(START_ID, tf.int64))
    tokens = _set_column(tf.zeros([batch, max_length], tf.int64), 0, start)
    done = tf.zeros([batch], tf.bool)
    scores = tf.zeros([batch], tf.float32)

    def not_finished(index, tokens, done, scores, caches):
        return tf.logical_and(index < max_length - 1, tf.logical_not(tf.reduce_all(done)))

    def step(index, tokens, done, scores, caches):
        done = tf.logical_or(done, index + 1 >= limits)
        logits, caches = model.decode_step(tokens[:, index], index, caches, cross, source)
        log_probs = _log_probs(logits)
        next_token = tf.argmax(log_probs, axis=-1, output_type=tf.int64)
        scores += tf.where(done, 0.0, _pick(log_probs, next_token))
        next_token = tf.where(done, tf.constant(PAD_ID, tf.int64), next_token)
        tokens = _set_column(tokens, index + 1, next_token)
        done = tf.logical_or(done, tf.equal(next_token, END_ID))
        return index + 1, tokens, done, scores, caches

    _, tokens, _, scores, _ = tf.while_loop(
        not_finished, step, (tf.constant(0), tokens, done, scores, caches)
    )
    return tokens, scores


def _length_penalty(lengths: tf.Tensor, alpha: float) -> tf.Tensor:
    # Wu et al. (2016): ((5 + length) / 6) ** alpha, so longer outputs are not punished unfairly.
    return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, alpha)


def beam_search(
    model, source, max_length, beam_size: int, alpha: float = 0.6, limits=None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Batched beam search with a key/value cache; beam_size 1 gives the greedy result.

    Returns the best hypothesis per sentence by length-normalized log-probability, and its
    (unnormalized) log-probability.
    """
    batch, k = tf.shape(source)[0], beam_size
    limits = _row_limits(limits, batch, max_length)
    flat_source = tf.repeat(source, k, axis=0)  # (batch * k, S): beams of a sentence adjacent
    cross, caches = model.start_decoding(flat_source, max_length)
    tokens = tf.zeros([batch * k, max_length], tf.int64)
    tokens = _set_column(tokens, 0, tf.fill([batch * k], tf.constant(START_ID, tf.int64)))
    # Only beam 0 is live at first, so the k copies of the start do not fill the beam.
    scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], _NEG)], 0)[None, :], [batch, 1])
    done = tf.zeros([batch, k], tf.bool)

    def not_finished(index, tokens, scores, done, caches):
        return tf.logical_and(index < max_length - 1, tf.logical_not(tf.reduce_all(done)))

    def step(index, tokens, scores, done, caches):
        done = tf.logical_or(done, (index + 1 >= limits)[:, None])
        logits, caches = model.decode_step(tokens[:, index], index, caches, cross, flat_source)
        vocab = tf.shape(logits)[-1]
        log_probs = tf.reshape(_log_probs(logits), [batch, k, vocab])
        # A finished beam continues only with padding, at no cost.
        pad_only = tf.where(tf.equal(tf.range(vocab), PAD_ID), 0.0, _NEG)
        log_probs = tf.where(done[:, :, None], pad_only[None, None, :], log_probs)
        candidates = tf.reshape(scores[:, :, None] + log_probs, [batch, k * vocab])
        scores, best = tf.math.top_k(candidates, k)
        parent = best // vocab
        next_token = tf.cast(best % vocab, tf.int64)
        rows = tf.reshape(tf.range(batch)[:, None] * k + parent, [-1])  # (batch * k,)
        tokens = _set_column(tf.gather(tokens, rows), index + 1, tf.reshape(next_token, [-1]))
        caches = [(tf.gather(keys, rows), tf.gather(values, rows)) for keys, values in caches]
        done = tf.logical_or(tf.gather(done, parent, batch_dims=1), tf.equal(next_token, END_ID))
        return index + 1, tokens, scores, done, caches

    _, tokens, scores, _, _ = tf.while_loop(
        not_finished, step, (tf.constant(0), tokens, scores, done, caches)
    )
    tokens = tf.reshape(tokens, [batch, k, max_length])
    lengths = tf.reduce_sum(tf.cast(tokens > PAD_ID, tf.int32), axis=-1) - 1
    best = tf.argmax(scores / _length_penalty(lengths, alpha), axis=1, output_type=tf.int32)
    return tf.gather(tokens, best, batch_dims=1), tf.gather(scores, best, batch_dims=1)
