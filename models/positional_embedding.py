"""Token embedding plus sinusoidal or learned positions."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def sinusoidal_table(length: int, depth: int) -> np.ndarray:
    """The (length, depth) position encoding of Vaswani et al. (2017), sin and cos interleaved."""
    positions = np.arange(length)[:, None]
    rates = 1.0 / np.power(10000.0, (2 * (np.arange(depth) // 2)) / depth)
    angles = positions * rates[None, :]
    table = np.zeros((length, depth), dtype="float32")
    table[:, 0::2] = np.sin(angles[:, 0::2])
    table[:, 1::2] = np.cos(angles[:, 1::2])
    return table


@keras.saving.register_keras_serializable(package="translation")
class PositionalEmbedding(keras.layers.Layer):
    """Embeds token ids and adds a position signal.

    Embeddings are scaled by sqrt(d_model) as in the paper so they are not drowned by the
    position signal. Padding (id 0) is not masked here: attention masks are built from the ids.

    Example:
        layer = PositionalEmbedding(vocab_size=100, d_model=16, max_length=32)
        layer(np.array([[2, 5, 3, 0]]))  # (1, 4, 16)
    """

    def __init__(self, vocab_size, d_model, max_length, positional="sinusoidal", **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.max_length = max_length
        self.positional = positional

    def build(self, input_shape):
        self.token_embedding = keras.layers.Embedding(
            self.vocab_size, self.d_model, name="token_embedding"
        )
        self.token_embedding.build(input_shape)
        if self.positional == "learned":
            self.position_embedding = keras.layers.Embedding(
                self.max_length, self.d_model, name="position_embedding"
            )
            self.position_embedding.build((None,))
        elif self.positional == "sinusoidal":
            self.table = sinusoidal_table(self.max_length, self.d_model)
        else:
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {self.positional}")

    def call(self, token_ids, start=0, positions=None):
        """`start` is the first token's position: step-by-step decoding embeds one at a time.

        `positions` (batch, time), if given, is each token's own position instead: packed rows
        hold several sentences, each starting at 0.
        """
        x = self.token_embedding(token_ids) * ops.sqrt(ops.cast(self.d_model, self.compute_dtype))
        if positions is None:
            positions = (ops.arange(ops.shape(token_ids)[1]) + start)[None, :]
        if self.positional == "learned":
            position_signal = self.position_embedding(positions)
        else:
            table = ops.convert_to_tensor(self.table, dtype=self.compute_dtype)
            position_signal = ops.take(table, positions, axis=0)
        return x + position_signal

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.d_model)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            max_length=self.max_length,
            positional=self.positional,
        )
        return config
