"""Optimizers: Adam that also records the global norm of each step's gradients."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="translation")
class NormTrackingAdam(keras.optimizers.Adam):
    """Adam whose `gradient_norm` variable holds the global L2 norm of the last step's gradients.

    The norm is of the gradients the update uses: after loss-scale removal (a
    `LossScaleOptimizer` passes unscaled gradients in) and, with several replicas, of their sum
    across replicas, which costs one extra all-reduce per step. Training callbacks read it for
    TensorBoard.
    """

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # Every replica computes the same value, so the first replica's write is the value.
        self.gradient_norm = self.add_variable(
            (), name="gradient_norm", aggregation="only_first_replica"
        )

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            # Keras builds the optimizer inside `apply` when it has not been built yet.
            self.build(trainable_variables)
        grads = list(grads)
        self.gradient_norm.assign(global_norm(_summed_across_replicas(_dense(grads))))
        return super().apply(grads, trainable_variables)


def global_norm(grads) -> keras.KerasTensor:
    """sqrt of the sum of squares of every gradient entry (None gradients skipped)."""
    squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads if g is not None]
    return ops.sqrt(sum(squares[1:], squares[0])) if squares else ops.zeros(())


def _dense(grads):
    """Embedding gradients arrive as `tf.IndexedSlices`, whose repeated indices must be
    summed before squaring: TensorFlow's own conversion does that."""
    if keras.backend.backend() != "tensorflow":
        return grads
    import tensorflow as tf

    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def _summed_across_replicas(grads):
    if keras.backend.backend() != "tensorflow":
        return grads
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    present = [i for i, g in enumerate(grads) if g is not None]
    summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
    out = list(grads)
    for i, g in zip(present, summed):
        out[i] = g
    return out
