"""The switch between Keras' own layer code and the paths this package writes for XLA steps.

XLA's CPU backend is slow at a few things TensorFlow's own kernels do well: random numbers
(`models.dropout`) and reductions over the leading axes of a tensor, which autodiff produces for
every bias, layer-norm scale and offset (`models.projection`, `models.layer_norm`), and at
passes over a large tensor such as the vocabulary logits (`models.losses`). The layers
here have a written-out path for compiled steps and are Keras' layers otherwise, with the same
weights either way: `components.train.build_model` switches them when the step is jit-compiled.
"""

from __future__ import annotations

import keras

from models.dropout import MultiHeadAttention, use_hash_masks
from models.layer_norm import LayerNormalization
from models.projection import RowDense
from models.transformer import TiedOutputProjection, Transformer


def use_compiled_paths(model: keras.Model, enabled: bool) -> None:
    """Switches `model`'s dropout masks, projections and layer norms to their XLA paths or back.

    Also whether a `Transformer` fuses its vocabulary projection with the loss. Takes effect
    when the training function is next traced (Keras traces it on first use).
    """
    use_hash_masks(model, enabled)
    if isinstance(model, Transformer):
        model.fused_loss = enabled
    for layer in model._flatten_layers(include_self=False):
        if isinstance(
            layer, (MultiHeadAttention, LayerNormalization, RowDense, TiedOutputProjection)
        ):
            layer.compiled = enabled
