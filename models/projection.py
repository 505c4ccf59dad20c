"""Dense projections with their gradient written out over 2-D rows, for XLA-compiled steps.

Autodiff of `x @ kernel + bias` on (batch, time, d) inputs takes the bias gradient as a
reduction of the (batch, time, units) output gradient over its two leading axes. XLA's CPU backend
runs that as a slow windowed column reduction; for the vocabulary logits it also computed the
softmax-minus-target gradient twice, because it wanted it in a different shape from the matmuls
that read it: on the 2-core machine, at the `tutorial` preset's 4,096 positions x 8,000 tokens,
the two cost about 45 ms of a 780 ms training step. Here the rows are flattened first and the
bias gradient is a product with a row of ones, which reads the one (positions, units) gradient
the weight and input gradients read as well: the logits part of that step fell from 194 to 150
ms. The values and gradients are the same as autodiff's (to float32 rounding).
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


def affine(x, matrix, bias, transposed: bool = False, fold_bias: bool = False):
    """(..., d) inputs -> (..., units) outputs: x @ matrix + bias, over 2-D rows.

    `matrix` is (d, units), or (units, d) with `transposed` (a shared token embedding);
    variables or tensors, in the dtype of `x`. With `fold_bias` the bias is a row of the
    product, rows extended by a column of ones, and the bias gradient a row of the weight
    gradient's product: for wide outputs (the vocabulary), where XLA on a CPU writes a separate
    pass for the bias add, that saves the pass and the product with ones.
    """
    matrix, bias = _value(matrix), _value(bias)
    depth = ops.shape(x)[-1]
    leading = ops.shape(x)[:-1]
    units = ops.shape(matrix)[0 if transposed else 1]

    @ops.custom_gradient
    def project(rows, matrix, bias):
        weights = ops.transpose(matrix) if transposed else matrix
        if fold_bias:
            rows_ones = ops.concatenate([rows, ops.ones_like(rows[:, :1])], axis=1)
            outputs = ops.matmul(rows_ones, ops.concatenate([weights, bias[None, :]], axis=0))
        else:
            outputs = ops.add(ops.matmul(rows, weights), bias)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            d_rows = ops.matmul(upstream, ops.transpose(weights))
            if fold_bias:  # (d + 1, units) or (units, d + 1): the last row/column is the bias'
                if transposed:
                    both = ops.matmul(ops.transpose(upstream), rows_ones)
                    return d_rows, both[:, :depth], both[:, depth]
                both = ops.matmul(ops.transpose(rows_ones), upstream)
                return d_rows, both[:depth], both[depth]
            ones = ops.ones((1, ops.shape(upstream)[0]), upstream.dtype)
            d_bias = ops.reshape(ops.matmul(ones, upstream), (-1,))
            if transposed:
                d_matrix = ops.matmul(ops.transpose(upstream), rows)
            else:
                d_matrix = ops.matmul(ops.transpose(rows), upstream)
            return d_rows, d_matrix, d_bias

        return outputs, grad

    outputs = project(ops.reshape(x, (-1, depth)), matrix, bias)
    return ops.reshape(outputs, (*leading, units))


@keras.saving.register_keras_serializable(package="translation")
class RowDense(keras.layers.Dense):
    """`keras.layers.Dense` (same weights and config); once `compiled` is set (XLA steps,
    `models.compiled.use_compiled_paths`), training calls are computed by `affine`, then its
    activation. Without a bias, or with LoRA or quantization, it is always Dense's call."""

    compiled = False
    fold_bias = False

    def call(self, inputs, training=None):
        if (
            not (self.compiled and training)
            or self.bias is None
            or self.lora_enabled
            or self.quantization_mode is not None
        ):
            return super().call(inputs, training=training)
        outputs = affine(
            inputs,
            ops.cast(self.kernel, inputs.dtype),
            ops.cast(self.bias, inputs.dtype),
            fold_bias=self.fold_bias,
        )
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="translation")
class OutputProjection(RowDense):
    """`RowDense` to the vocabulary logits, its bias folded into the product (`affine`)."""

    fold_bias = True

    def projection(self):
        """(matrix (d, vocab), bias): the logits are x @ matrix + bias."""
        return self.kernel, self.bias
