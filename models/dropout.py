"""Dropout whose masks stay cheap when the training step is compiled with XLA on a CPU.

Keras' dropout draws its mask with TensorFlow's stateless uniform op. Run by TensorFlow's own
kernel that is fast, but XLA's CPU backend lowers it to a slow generator: on the 2-core machine a
4096 x 512 uniform draw took 40 ms under XLA against 1.7 ms without, and dropout made the
`tutorial` preset's compiled training step 1.4x slower (1,048 against 728 ms without dropout,
at 128 x 32 tokens). The hash mask here is a counter-based hash of (seed, element
index), a few integer operations per element that XLA fuses into the ops that use the mask, so
it costs almost nothing there; outside XLA the same operations run one kernel each and are
slower than TensorFlow's generator. So `use_hash_masks(model, True)` is for XLA-compiled steps
only; `components.train.build_model` switches it on exactly when the step is jit-compiled.

Both mask kinds draw their seed from the layer's `SeedGenerator`, so the variables (and so
checkpoints and resumed runs) are the same whichever is used, and a seed gives the same mask
every time.
"""

from __future__ import annotations

import keras
from keras import ops

from models.projection import affine

_GOLDEN = 0x9E3779B1  # 2^32 / golden ratio: spreads consecutive counters over the 32 bits
_ROW = 0x7F4A7C15


def _u32(value):
    return ops.convert_to_tensor(value, dtype="uint32")


def _mix(h):
    """MurmurHash3's 32-bit finalizer: every input bit flips each output bit with p ~ 1/2."""
    h = ops.bitwise_xor(h, ops.right_shift(h, _u32(16)))
    h = ops.multiply(h, _u32(0x85EBCA6B))
    h = ops.bitwise_xor(h, ops.right_shift(h, _u32(13)))
    h = ops.multiply(h, _u32(0xC2B2AE35))
    return ops.bitwise_xor(h, ops.right_shift(h, _u32(16)))


def hash_keep_mask(shape, rate: float, seed):
    """Boolean mask of `shape`, True with probability 1 - rate (to 2^-32), from a (2,) seed.

    Element (row, column) of the shape flattened to 2-D gets hash(hash(row, seed), column).
    """
    seed = ops.cast(seed, "uint32")
    key = _mix(ops.add(ops.multiply(seed[0], _u32(_GOLDEN)), _mix(ops.add(seed[1], _u32(_ROW)))))
    columns = shape[-1]
    rows = ops.prod(ops.convert_to_tensor(shape[:-1], dtype="int32")) if len(shape) > 1 else 1
    row_ids = ops.cast(ops.arange(rows, dtype="int32"), "uint32")
    column_ids = ops.cast(ops.arange(columns, dtype="int32"), "uint32")
    row_keys = _mix(ops.add(ops.multiply(row_ids, _u32(_GOLDEN)), key))
    h = _mix(ops.add(row_keys[:, None], ops.multiply(column_ids[None, :], _u32(_GOLDEN))))
    threshold = _u32(min(int(round(rate * 2**32)), 2**32 - 1))
    return ops.reshape(ops.greater_equal(h, threshold), shape)


def hash_dropout(inputs, rate: float, seed_generator):
    """Inverted dropout with a hash mask: kept values scaled by 1 / (1 - rate)."""
    if rate >= 1.0:
        return ops.zeros_like(inputs)  # as Keras' dropout does; nothing is kept to scale
    keep = hash_keep_mask(ops.shape(inputs), rate, seed_generator.next())
    scaled = ops.divide(inputs, ops.cast(1.0 - rate, inputs.dtype))
    return ops.where(keep, scaled, ops.zeros_like(inputs))


@keras.saving.register_keras_serializable(package="translation")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` that draws hash masks once `use_hash_masks` switched it over
    (not with a `noise_shape`, which this model does not use: that stays Keras' dropout)."""

    hash_masks = False

    def call(self, inputs, training=False):
        if training and self.rate > 0 and self.hash_masks and self.noise_shape is None:
            return hash_dropout(inputs, self.rate, self.seed_generator)
        return super().call(inputs, training=training)


@keras.saving.register_keras_serializable(package="translation")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` whose attention dropout can draw hash masks.

    With hash masks off, or outside training, it is Keras' layer unchanged. With them on, the
    attention probabilities are computed as Keras' explicit path does (scaled dot products,
    masked softmax), as heads-first batched matmuls (`batched_matmul`), and dropped with a hash
    mask seeded by the layer's own dropout layer.

    With `compiled` also set (`models.compiled.use_compiled_paths`, XLA steps), a training call
    projects with the same weights in fewer, wider products, each with the written-out gradient
    of `models.projection.affine`: self-attention its queries, keys and values in one (the
    three kernels side by side), cross-attention its keys and values in one. On the 2-core
    machine this, the feed-forward layers' and the layer norms' written-out gradients made the
    `tutorial` preset's compiled step about 3% faster (same-process A/B, noisy to +-3%).
    """

    hash_masks = False
    compiled = False

    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        **kwargs,
    ):
        if not (
            training
            and self.compiled
            and not kwargs
            and not return_attention_scores
            and (key is None or key is value)
            and getattr(query, "_keras_mask", None) is None
            and getattr(value, "_keras_mask", None) is None
            and self._fusable()
        ):
            return super().call(
                query,
                value,
                key=key,
                attention_mask=attention_mask,
                return_attention_scores=return_attention_scores,
                training=training,
                use_causal_mask=use_causal_mask,
                **kwargs,
            )
        attention_mask = self._compute_attention_mask(
            query, value, attention_mask=attention_mask, use_causal_mask=use_causal_mask
        )
        heads, size = self._num_heads, self._key_dim
        dtype = query.dtype

        def flat(dense):  # (d, heads, size) -> (d, heads * size), bias (heads * size,)
            kernel = ops.cast(dense.kernel, dtype)
            return (
                ops.reshape(kernel, (ops.shape(kernel)[0], -1)),
                ops.reshape(ops.cast(dense.bias, dtype), (-1,)),
            )

        def split(projected, parts):
            # ops.split, whose gradient is one concatenation (slices' gradients are padded
            # copies, summed).
            shape = ops.shape(projected)
            return [
                ops.reshape(part, (*shape[:-1], heads, size))
                for part in ops.split(projected, parts, axis=-1)
            ]

        if query is value:
            kernels, biases = zip(
                *(flat(d) for d in (self._query_dense, self._key_dense, self._value_dense))
            )
            q, k, v = split(
                affine(query, ops.concatenate(kernels, 1), ops.concatenate(biases, 0)), 3
            )
        else:
            (q,) = split(affine(query, *flat(self._query_dense)), 1)
            kernels, biases = zip(*(flat(d) for d in (self._key_dense, self._value_dense)))
            k, v = split(affine(value, ops.concatenate(kernels, 1), ops.concatenate(biases, 0)), 2)
        output, _ = self._compute_attention(q, k, v, attention_mask, training)
        out = self._output_dense
        shape = ops.shape(output)
        kernel = ops.cast(out.kernel, dtype)
        kernel = ops.reshape(kernel, (-1, ops.shape(kernel)[-1]))
        return affine(
            ops.reshape(output, (*shape[:-2], heads * size)), kernel, ops.cast(out.bias, dtype)
        )

    def _fusable(self) -> bool:
        denses = (self._query_dense, self._key_dense, self._value_dense, self._output_dense)
        return (
            not self._use_gate
            and self._sliding_window is None
            and self._output_shape is None
            and all(
                d.bias is not None
                and not d.lora_enabled
                and d.quantization_mode is None
                and d.activation in (None, keras.activations.linear)
                for d in denses
            )
        )

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        if not (training and self._dropout > 0.0 and self.hash_masks):
            kwargs = {"use_causal_mask": True} if use_causal_mask else {}
            return super()._compute_attention(
                query, key, value, attention_mask, training, return_attention_scores, **kwargs
            )
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = (
                causal
                if attention_mask is None
                else ops.logical_and(ops.cast(attention_mask, "bool"), causal)
            )
        query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
        # Heads first, (batch, heads, time, head_dim), then plain batched matmuls: the same
        # products as Keras' einsum equations, but XLA's CPU backend runs them faster with the
        # batch dimensions leading (the tutorial preset's compiled step at packed 128 x 32:
        # 620-636 against 656-667 ms, the same loss).
        query = ops.transpose(query, (0, 2, 1, 3))
        key = ops.transpose(key, (0, 2, 3, 1))
        value = ops.transpose(value, (0, 2, 1, 3))
        scores = self._masked_softmax(batched_matmul(query, key), attention_mask)
        dropped = hash_dropout(scores, self._dropout, self._dropout_layer.seed_generator)
        return ops.transpose(batched_matmul(dropped, value), (0, 2, 1, 3)), scores


def batched_matmul(a, b):
    """a @ b over leading batch axes; under TensorFlow, with `b`'s gradient a @-product of a
    transposed copy of `a` (XLA would fold the transpose into the product: held apart by an
    optimization barrier). XLA's CPU backend runs the attention products that contract the
    row axis of their first operand (a^T @ g) at a third of the speed of plain ones."""
    if keras.backend.backend() != "tensorflow":
        return ops.matmul(a, b)
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python import xla

    @tf.custom_gradient
    def product(a, b):
        def grad(upstream):
            (a_t,) = xla.optimization_barrier(tf.linalg.matrix_transpose(a))
            return tf.matmul(upstream, b, transpose_b=True), tf.matmul(a_t, upstream)

        return tf.matmul(a, b), grad

    return product(a, b)


def use_hash_masks(model: keras.Model, enabled: bool) -> None:
    """Switches every dropout of `model` (this module's layers) to hash masks or back.

    Takes effect when the training function is next traced (Keras traces it on first use).
    """
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (Dropout, MultiHeadAttention)):
            layer.hash_masks = enabled
