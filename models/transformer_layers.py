"""Encoder and decoder blocks built on `keras.layers.MultiHeadAttention`.

Masks are explicit boolean tensors broadcastable to (batch, query, key): True where a query may
attend to a key. `norm_first=True` is the pre-layer-norm variant, which trains stably without a
long warmup; `False` is the paper's post-layer-norm.
"""

from __future__ import annotations

import keras
from keras import ops

from models.dropout import Dropout, MultiHeadAttention
from models.layer_norm import LayerNormalization
from models.projection import RowDense


def _attend(attention, x, key, value, mask):
    """Attention of `x` over already projected keys and values (the cached path).

    Uses the layer's own projections and `_compute_attention`, so the result matches a normal
    call of the layer on the same inputs.
    """
    query = attention._query_dense(x)
    output, _ = attention._compute_attention(query, key, value, mask, training=False)
    return attention._output_dense(output)


def _feed_forward(d_model, dff, dropout, name):
    return keras.Sequential(
        [
            RowDense(dff, activation="relu"),
            RowDense(d_model),
            Dropout(dropout),
        ],
        name=name,
    )


class _Block(keras.layers.Layer):
    """Shared residual plumbing: sublayer, dropout, residual add, layer norm (pre or post)."""

    def __init__(self, d_model, num_heads, dff, dropout=0.1, norm_first=True, **kwargs):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.dropout = dropout
        self.norm_first = norm_first

    def _attention(self, name):
        return MultiHeadAttention(
            self.num_heads, self.d_model // self.num_heads, dropout=self.dropout, name=name
        )

    def _residual(self, x, norm, sublayer, training):
        if self.norm_first:
            return x + sublayer(norm(x), training=training)
        return norm(x + sublayer(x, training=training))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            d_model=self.d_model,
            num_heads=self.num_heads,
            dff=self.dff,
            dropout=self.dropout,
            norm_first=self.norm_first,
        )
        return config


@keras.saving.register_keras_serializable(package="translation")
class TransformerEncoderBlock(_Block):
    """Self-attention over the source, then a position-wise feed-forward network.

    Example:
        block = TransformerEncoderBlock(d_model=16, num_heads=2, dff=32)
        y = block(x, attention_mask=source_ids[:, None, :] != 0)  # x: (batch, time, 16)
    """

    def build(self, input_shape):
        self.self_attention = self._attention("self_attention")
        self.self_attention.build(input_shape, input_shape)
        self.feed_forward = _feed_forward(self.d_model, self.dff, self.dropout, "feed_forward")
        self.feed_forward.build(input_shape)
        self.attention_dropout = Dropout(self.dropout)
        self.norm1 = LayerNormalization(epsilon=1e-6, name="norm1")
        self.norm2 = LayerNormalization(epsilon=1e-6, name="norm2")
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)

    def call(self, x, attention_mask=None, training=None):
        def attend(h, training=None):
            h = self.self_attention(h, h, attention_mask=attention_mask, training=training)
            return self.attention_dropout(h, training=training)

        x = self._residual(x, self.norm1, attend, training)
        return self._residual(x, self.norm2, self.feed_forward, training)


@keras.saving.register_keras_serializable(package="translation")
class TransformerDecoderBlock(_Block):
    """Causal self-attention, cross-attention to the encoder output, then feed-forward.

    `self_mask` must already include the causal constraint; `cross_mask` hides source padding.
    """

    def build(self, x_shape, memory_shape=None):
        memory_shape = memory_shape or x_shape
        self.self_attention = self._attention("self_attention")
        self.self_attention.build(x_shape, x_shape)
        self.cross_attention = self._attention("cross_attention")
        self.cross_attention.build(x_shape, memory_shape)
        self.feed_forward = _feed_forward(self.d_model, self.dff, self.dropout, "feed_forward")
        self.feed_forward.build(x_shape)
        self.dropout1 = Dropout(self.dropout)
        self.dropout2 = Dropout(self.dropout)
        self.norms = [LayerNormalization(epsilon=1e-6, name=f"norm{i + 1}") for i in range(3)]
        for norm in self.norms:
            norm.build(x_shape)

    def call(
        self, x, memory, self_mask=None, cross_mask=None, training=None, return_attention=False
    ):
        """With `return_attention`, also the cross-attention weights (batch, heads, T, S)."""
        weights = []

        def attend_self(h, training=None):
            h = self.self_attention(h, h, attention_mask=self_mask, training=training)
            return self.dropout1(h, training=training)

        def attend_source(h, training=None):
            if return_attention:
                h, scores = self.cross_attention(
                    h,
                    memory,
                    attention_mask=cross_mask,
                    training=training,
                    return_attention_scores=True,
                )
                weights.append(scores)
            else:
                h = self.cross_attention(h, memory, attention_mask=cross_mask, training=training)
            return self.dropout2(h, training=training)

        x = self._residual(x, self.norms[0], attend_self, training)
        x = self._residual(x, self.norms[1], attend_source, training)
        x = self._residual(x, self.norms[2], self.feed_forward, training)
        return (x, weights[0]) if return_attention else x

    def cross_key_value(self, memory):
        """Cross-attention keys and values of the encoder output, computed once per sentence."""
        attention = self.cross_attention
        return attention._key_dense(memory), attention._value_dense(memory)

    def step(self, x, cache, index, cross_key_value, cross_mask):
        """One decoding position: x (batch, 1, d_model) at `index`, with a key/value cache.

        `cache` is (keys, values), each (batch, max_length, heads, head_dim); the projections
        of this position are written at `index` and later positions stay hidden by the mask.
        Returns the block output and the updated cache.
        """
        keys, values = cache
        positions = ops.arange(ops.shape(keys)[1])
        here = ops.reshape(ops.equal(positions, index), (1, -1, 1, 1))
        visible = ops.reshape(ops.less_equal(positions, index), (1, 1, -1))
        written = []

        def attend_self(h, training=None):
            new_keys = ops.where(here, self.self_attention._key_dense(h), keys)
            new_values = ops.where(here, self.self_attention._value_dense(h), values)
            written.append((new_keys, new_values))
            return _attend(self.self_attention, h, new_keys, new_values, visible)

        def attend_source(h, training=None):
            return _attend(self.cross_attention, h, *cross_key_value, cross_mask)

        x = self._residual(x, self.norms[0], attend_self, False)
        x = self._residual(x, self.norms[1], attend_source, False)
        x = self._residual(x, self.norms[2], self.feed_forward, False)
        return x, written[0]
