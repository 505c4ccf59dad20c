"""Layer normalization with its gradient written out over 2-D rows, for XLA-compiled steps.

Autodiff of Keras' layer normalization takes the scale and offset gradients as reductions of
(batch, time, d_model) tensors over their two leading axes, which XLA's CPU backend runs as slow
windowed column reductions (about 0.45 ms each at the `tutorial` preset's 4,096 positions x 128,
two per normalization, 44 per step). Here each is a product of a row of ones with the
(positions, d_model) terms, and the input gradient is the closed form
r * (g - mean(g) - x_hat * mean(g * x_hat)), g = upstream * gamma, r = 1 / sqrt(var + eps).
The values and gradients are those of autodiff (to float32 rounding).
"""

from __future__ import annotations

import keras
from keras import ops

from models.projection import _value


def layer_norm(x, gamma, beta, epsilon: float):
    """Normalizes `x` over its last axis, then scales by `gamma` and offsets by `beta`."""
    gamma, beta = _value(gamma), _value(beta)
    shape = ops.shape(x)
    depth = shape[-1]

    @ops.custom_gradient
    def normalize(rows, gamma, beta):
        centered = rows - ops.mean(rows, axis=-1, keepdims=True)
        inverse = ops.rsqrt(ops.mean(ops.square(centered), axis=-1, keepdims=True) + epsilon)
        normalized = centered * inverse
        outputs = normalized * gamma + beta

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            ones = ops.ones((1, ops.shape(upstream)[0]), upstream.dtype)
            d_gamma = ops.reshape(ops.matmul(ones, upstream * normalized), (-1,))
            d_beta = ops.reshape(ops.matmul(ones, upstream), (-1,))
            scaled = upstream * gamma
            d_rows = inverse * (
                scaled
                - ops.mean(scaled, axis=-1, keepdims=True)
                - normalized * ops.mean(scaled * normalized, axis=-1, keepdims=True)
            )
            return d_rows, d_gamma, d_beta

        return outputs, grad

    return ops.reshape(normalize(ops.reshape(x, (-1, depth)), gamma, beta), shape)


@keras.saving.register_keras_serializable(package="translation")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` (same weights and config); once `compiled` is set (XLA
    steps, `models.compiled.use_compiled_paths`), training calls are computed by `layer_norm`
    where it applies: float32, the last axis, scale and offset, no RMS scaling."""

    compiled = False

    def call(self, inputs, training=None):
        axes = tuple(self.axis) if isinstance(self.axis, (list, tuple)) else (self.axis,)
        if (
            self.compiled
            and training
            and axes in ((-1,), (len(inputs.shape) - 1,))
            and self.center
            and self.scale
            and not self.rms_scaling
            and inputs.dtype == "float32"
            and self.gamma.dtype == "float32"
        ):
            return layer_norm(inputs, self.gamma, self.beta, self.epsilon)
        return super().call(inputs)
