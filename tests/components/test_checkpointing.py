"""The training state file: exact round trip, atomic replacement, refusal of a foreign state."""

import keras
import numpy as np
import pytest

from components.checkpointing import (
    STATE_FILE,
    EpochWeights,
    Position,
    StepCheckpoint,
    average_epoch_weights,
    epoch_seed,
    load_state,
    save_state,
    variable_groups,
)
from components.train import build_model
from pipeline.config import TrainConfig

_CFG = TrainConfig(preset="tiny", warmup_steps=5)


def _trained(seed: int, steps: int):
    keras.utils.set_random_seed(seed)
    model = build_model(_CFG, 30, 40)
    rng = np.random.default_rng(seed)
    source = rng.integers(4, 30, (4, 6))
    target = rng.integers(4, 40, (4, 7))
    x = {"source": source, "target_in": target[:, :-1]}
    model.fit(x, target[:, 1:], batch_size=2, epochs=1, steps_per_epoch=steps, verbose=0)
    return model


def _values(model):
    return {g: [np.array(v.numpy()) for v in vs] for g, vs in variable_groups(model).items()}


def test_restore_puts_back_every_variable_exactly(tmp_path):
    saved = _trained(seed=1, steps=2)
    position = Position(epoch=3, step_in_epoch=7, global_step=42, history={"loss": [2.5, 1.25]})
    save_state(tmp_path, saved, position, with_metrics=True)

    other = _trained(seed=2, steps=1)
    state = load_state(tmp_path)
    assert state.position == position and state.has_metrics
    for group in ("model", "optimizer", "metrics"):
        state.restore(other, group)
    expected, got = _values(saved), _values(other)
    for group in expected:
        assert len(expected[group]) == len(got[group]) > 0
        for a, b in zip(expected[group], got[group]):
            np.testing.assert_array_equal(a, b)
    # The state holds the RNG (dropout seed generators) and the optimizer's step.
    assert any("seed_generator" in v.path for v in variable_groups(saved)["model"])
    assert int(other.optimizer.iterations.numpy()) == 2


def test_a_torn_write_leaves_the_previous_state(tmp_path):
    model = _trained(seed=1, steps=1)
    save_state(tmp_path, model, Position(global_step=1), with_metrics=False)
    # A run killed in the middle of a save leaves only its temporary file behind.
    torn = tmp_path / f".{STATE_FILE}.tmp-99999"
    torn.write_bytes(b"PK\x03\x04 half a zip")
    state = load_state(tmp_path)
    assert state.position.global_step == 1 and not state.has_metrics
    assert not torn.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]


def test_no_state_and_foreign_state(tmp_path):
    assert load_state(tmp_path / "missing") is None
    assert load_state(tmp_path) is None
    save_state(tmp_path, _trained(seed=1, steps=1), Position(), with_metrics=False)
    keras.utils.set_random_seed(0)
    bigger = build_model(TrainConfig(num_layers=2, d_model=16, num_heads=2, dff=32), 30, 40)
    with pytest.raises(ValueError, match="model variables do not match"):
        load_state(tmp_path).restore(bigger, "model")


def test_epoch_seeds_differ_per_epoch_and_repeat_per_run():
    seeds = [epoch_seed(0, e) for e in range(50)]
    assert len(set(seeds)) == 50
    assert seeds == [epoch_seed(0, e) for e in range(50)]
    assert epoch_seed(1, 0) != epoch_seed(0, 0)


def test_last_epochs_weights_are_saved_and_averaged_exactly(tmp_path):
    model = _trained(seed=1, steps=1)
    variables = list(model.variables)
    floating = [v for v in variables if "float" in str(v.dtype)]
    integer = [v for v in variables if "float" not in str(v.dtype)]
    assert floating and integer  # the dropout seed generators' states are integers
    saver = EpochWeights(tmp_path, epochs=5, count=3)
    saver.set_model(model)
    # Epoch e (1-based) ends with every float weight equal to e and the RNG state at 10 * e.
    for epoch in range(5):
        for v in floating:
            v.assign(np.full(v.shape, epoch + 1.0, "float32"))
        for v in integer:
            v.assign(np.full(v.shape, 10 * (epoch + 1), v.dtype))
        saver.on_epoch_end(epoch)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"weights-epoch-000{e}.npz" for e in (3, 4, 5)]

    average_epoch_weights(tmp_path, model, [3, 4, 5])
    for v in floating:
        np.testing.assert_array_equal(v.numpy(), np.full(v.shape, 4.0, "float32"))
    # Integer variables are not averaged: they keep the model's current (last) values.
    for v in integer:
        np.testing.assert_array_equal(v.numpy(), np.full(v.shape, 50, v.dtype))
    average_epoch_weights(tmp_path, model, [4, 5])
    np.testing.assert_array_equal(floating[0].numpy(), np.full(floating[0].shape, 4.5))

    with pytest.raises(FileNotFoundError, match="weights of epoch 2 were not saved"):
        average_epoch_weights(tmp_path, model, [2, 3])
    keras.utils.set_random_seed(0)
    bigger = build_model(TrainConfig(num_layers=2, d_model=16, num_heads=2, dff=32), 30, 40)
    with pytest.raises(ValueError, match="holds .* arrays, the model"):
        average_epoch_weights(tmp_path, bigger, [3])


def test_mid_epoch_saves_count_batches_not_optimizer_steps(tmp_path, monkeypatch):
    # A loss-scaling optimizer (mixed_float16) skips the steps whose gradients overflow without
    # counting them; the data position must still count every batch consumed.
    model = _trained(seed=1, steps=1)
    monkeypatch.setattr(StepCheckpoint, "_step", lambda self: 3)  # no step counted after 3
    checkpoint = StepCheckpoint(tmp_path, every_steps=10, resume=None)
    checkpoint.set_model(model)
    checkpoint.on_epoch_begin(0)
    for batch in range(25):
        checkpoint.on_train_batch_end(batch)
    assert checkpoint.saves == 2
    assert load_state(tmp_path).position.step_in_epoch == 20
    # Resumed there: the resumed fit's batch index restarts at 0 after the 20 skipped batches.
    resumed = StepCheckpoint(tmp_path, every_steps=10, resume=load_state(tmp_path))
    resumed.set_model(model)
    resumed.on_epoch_begin(0)
    for batch in range(12):
        resumed.on_train_batch_end(batch)
    assert resumed.saves == 1 and load_state(tmp_path).position.step_in_epoch == 30
