"""Choosing the tf.distribute strategy and the precision policy from the hardware.

Only stock strategies: the project never grows cluster code of its own.
"""

from __future__ import annotations

import logging
import os

import keras
import tensorflow as tf

log = logging.getLogger("pipeline")


def _local_tpus() -> bool:
    # Only a TPU named by the environment or attached to this VM: probing for a remote one
    # would reach for a metadata server, which this project never does unasked.
    return bool(os.environ.get("TPU_NAME")) or bool(tf.config.list_logical_devices("TPU"))


def choose_strategy(name: str) -> tf.distribute.Strategy:
    """auto: a TPU if one is configured, MirroredStrategy for several GPUs, else the default."""
    if name == "auto":
        if _local_tpus():
            name = "tpu"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":  # the cluster comes from the TF_CONFIG environment variable
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        tpu_name = os.environ.get("TPU_NAME", "")
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu_name)
        except ValueError as error:  # no TPU attached and none named
            raise ValueError(
                f"train.strategy=tpu: no TPU found ({error}); set TPU_NAME to a TPU's name or "
                "address, or run where one is attached"
            ) from None
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}")


def choose_precision(name: str, strategy: tf.distribute.Strategy) -> str:
    """auto: bfloat16 on TPU, float16 (with loss scaling) on GPU, float32 on CPU.

    CPU stays float32: on the 2-core machine mixed_bfloat16 gained little for the tutorial
    preset (a packed 128 x 32 training step: 714 against 777 ms uncompiled, 638 against 595-647
    compiled), although uncompiled bfloat16 matmuls alone ran at 305-333 GFLOP/s against 131-204,
    and what it does to translation quality is unmeasured. On an Intel 2-core machine with AMX,
    where oneDNN's bfloat16 matmuls ran at 446-1,106 GFLOP/s against 208-255 for float32, the
    packed step still did not gain: 5,619 against 5,966 target tokens/s compiled (XLA's bfloat16
    dots ran at 134-176 GFLOP/s) and 4,746 against 4,416 uncompiled, where elementwise ops and
    random numbers outweigh the matmuls.
    """
    if name != "auto":
        return name
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    return "float32"


def set_precision(policy: str) -> None:
    """Sets Keras' global dtype policy; Keras adds loss scaling for mixed_float16 itself."""
    keras.mixed_precision.set_global_policy(policy)
    log.info("precision policy %s", policy)
