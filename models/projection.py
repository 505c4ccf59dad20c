"""The projection to vocabulary logits, with its gradient written out over 2-D rows.

Autodiff of `x @ kernel + bias` on (batch, time, d_model) inputs takes the bias gradient as a
reduction of the (batch, time, vocab) logit gradient over its two leading axes. XLA's CPU backend
runs that as a slow windowed column reduction, and because it wants the gradient in a different
shape from the matmuls that also read it, it computes the softmax-minus-target gradient twice: on
the 2-core machine, at the `tutorial` preset's 4,096 positions x 8,000 tokens, the two cost about
45 ms of a 780 ms training step. Here the rows are flattened first and the bias gradient is a
product with a row of ones, which reads the one (positions, vocab) gradient the weight and input
gradients read as well: the logits part of that step fell from 194 to 150 ms. The values
and gradients are the same as autodiff's (to float32 rounding).
"""

from __future__ import annotations

import keras
from keras import ops


def _value(variable_or_tensor):
    """A tensor of the current value: the custom gradient must not read variables itself."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(variable_or_tensor)
    return ops.convert_to_tensor(variable_or_tensor)


def project_to_vocabulary(x, matrix, bias, transposed: bool = False):
    """(..., d) inputs -> (..., vocab) logits: x @ matrix + bias.

    `matrix` is (d, vocab), or (vocab, d) with `transposed` (a shared token embedding);
    variables or tensors, in the dtype of `x`.
    """
    matrix, bias = _value(matrix), _value(bias)
    depth = ops.shape(x)[-1]
    leading = ops.shape(x)[:-1]
    vocab = ops.shape(matrix)[0 if transposed else 1]

    @ops.custom_gradient
    def project(rows, matrix, bias):
        weights = ops.transpose(matrix) if transposed else matrix
        logits = ops.add(ops.matmul(rows, weights), bias)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            ones = ops.ones((1, ops.shape(upstream)[0]), upstream.dtype)
            d_bias = ops.reshape(ops.matmul(ones, upstream), (-1,))
            d_rows = ops.matmul(upstream, ops.transpose(weights))
            if transposed:
                d_matrix = ops.matmul(ops.transpose(upstream), rows)
            else:
                d_matrix = ops.matmul(ops.transpose(rows), upstream)
            return d_rows, d_matrix, d_bias

        return logits, grad

    logits = project(ops.reshape(x, (-1, depth)), matrix, bias)
    return ops.reshape(logits, (*leading, vocab))


@keras.saving.register_keras_serializable(package="translation")
class OutputProjection(keras.layers.Dense):
    """`keras.layers.Dense` to the vocabulary (same weights and config), computed by
    `project_to_vocabulary`. Without a bias, or with LoRA or quantization, it is Dense's call."""

    def call(self, inputs, training=None):
        if (
            self.bias is None
            or self.activation not in (None, keras.activations.linear)
            or self.lora_enabled
            or self.quantization_mode is not None
        ):
            return super().call(inputs, training=training)
        return project_to_vocabulary(
            inputs, ops.cast(self.kernel, inputs.dtype), ops.cast(self.bias, inputs.dtype)
        )
