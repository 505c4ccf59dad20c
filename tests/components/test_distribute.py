"""A real two-replica MirroredStrategy step on two logical CPUs equals the one-replica step."""

import json
import subprocess
import sys

import pytest
import tensorflow as tf

from components.distribute import choose_precision, choose_strategy

# Logical devices must be set before TensorFlow runs anything, so this runs in its own process.
_SCRIPT = """
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pipeline.config import TrainConfig
from components.train import build_model

cfg = TrainConfig(preset="tiny", dropout=0.0, label_smoothing=0.1, warmup_steps=10)
rng = np.random.default_rng(0)
# Four sentences with no padding: each replica gets two, so both see the same token count and
# the mean of the replicas' mean losses is the whole batch's mean loss.
source = rng.integers(4, 40, (4, 7))
target = rng.integers(4, 50, (4, 6))
x = {"source": source, "target_in": target[:, :-1]}
y = target[:, 1:]

def one_step(strategy):
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = build_model(cfg, 40, 50)
        # Adam's first step is about lr * sign(gradient), which turns float noise in tiny
        # gradients into full-size differences; SGD shows the gradients themselves agree.
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=model.loss)
    data = tf.data.Dataset.from_tensors((x, y))
    history = model.fit(data, epochs=1, verbose=0)
    return model, history.history["loss"][0]

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
single, single_loss = one_step(tf.distribute.get_strategy())
multi, multi_loss = one_step(mirrored)
diff = max(float(np.max(np.abs(a - b)))
           for a, b in zip(single.get_weights(), multi.get_weights()))
moved = max(float(np.max(np.abs(a - b)))
            for a, b in zip(single.get_weights(), build_model(cfg, 40, 50).get_weights()))

def gradient_norm(strategy):
    # The model's own optimizer: its recorded norm is of the gradient summed over replicas.
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = build_model(cfg, 40, 50)
    model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)
    return float(model.optimizer.gradient_norm.numpy())

print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "max_weight_diff": diff,
                  "single_loss": single_loss, "multi_loss": multi_loss, "moved": moved,
                  "single_norm": gradient_norm(tf.distribute.get_strategy()),
                  "multi_norm": gradient_norm(mirrored)}))
"""


def test_mirrored_step_matches_single_replica():
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert abs(result["single_loss"] - result["multi_loss"]) < 1e-5
    assert result["max_weight_diff"] < 1e-5
    assert result["moved"] > 1e-4  # the step really changed the weights
    assert result["single_norm"] > 0.01
    assert abs(result["single_norm"] - result["multi_norm"]) < 1e-5 * result["single_norm"]


def test_auto_choices_on_a_cpu_machine():
    strategy = choose_strategy("auto")
    assert strategy.num_replicas_in_sync == 1
    assert choose_precision("auto", strategy) == "float32"
    assert choose_precision("mixed_bfloat16", strategy) == "mixed_bfloat16"
    assert isinstance(choose_strategy("default"), type(tf.distribute.get_strategy()))


def test_tpu_strategy_without_a_tpu_names_the_key(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ValueError, match=r"^train\.strategy=tpu: no TPU found \(.*set TPU_NAME"):
        choose_strategy("tpu")
