"""Learning-rate schedules."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="translation")
class InverseSqrtSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Vaswani et al. (2017): scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Rises linearly for `warmup_steps`, then decays with the inverse square root of the step.
    Steps count from 1 so the first update has a non-zero rate.
    """

    def __init__(self, d_model, warmup_steps=4000, scale=1.0):
        self.d_model = d_model
        self.warmup_steps = warmup_steps
        self.scale = scale

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        warmup = ops.cast(self.warmup_steps, "float32")
        rate = ops.minimum(ops.rsqrt(step), step * warmup**-1.5)
        return self.scale * ops.rsqrt(ops.cast(self.d_model, "float32")) * rate

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "scale": self.scale}
