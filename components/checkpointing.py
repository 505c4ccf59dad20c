"""Step-level training state: saved every N steps in one atomic write, restored after a crash.

The state file `state.npz` holds every variable training changes, in three groups:
- `model`: weights plus the dropout layers' seed-generator states (the RNG),
- `optimizer`: Adam's moments and its step counter (so the learning-rate schedule resumes too),
- `metrics`: the running sums behind the epoch's training metrics, when saved mid-epoch,
and a JSON record of the data position (epoch and batches done in it) and the finished epochs'
history. Each epoch's batch order is a pure function of (seed, epoch), so skipping the batches
already done puts the input exactly where the killed run was.

A save writes a temporary file, fsyncs it and renames it over the previous state: a run killed
at any moment leaves either the old or the new state, never a torn one. Loading uses numpy
without pickle, and only reads the file this stage wrote into its own staging directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import keras
import numpy as np

STATE_FILE = "state.npz"
_META = "__meta__"


@dataclasses.dataclass
class Position:
    """Where training stands: `epoch` (0-based) in progress with `step_in_epoch` batches done."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    # Logs of the finished epochs, as Keras' History keeps them.
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    # Mid-epoch running values of callbacks that keep some (`get_state`/`set_state`), by name.
    callbacks: dict[str, dict] = dataclasses.field(default_factory=dict)


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: distinct per epoch, the same in every run."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def variable_groups(model) -> dict[str, list]:
    """The variables a training state holds, by group, in a fixed order."""
    return {
        "model": list(model.variables),
        "optimizer": list(model.optimizer.variables),
        "metrics": [v for metric in model.metrics for v in metric.variables],
    }


def _signature(variable) -> str:
    """Shape and dtype: what must agree for a saved value to go into a variable. (Paths do
    not: Keras numbers layer names per process.)"""
    return f"{tuple(variable.shape)}:{variable.dtype}"


def save_state(directory: Path, model, position: Position, *, with_metrics: bool) -> Path:
    """Writes the state atomically to `directory/state.npz`; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    groups = variable_groups(model)
    if not with_metrics:
        del groups["metrics"]
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, list[str]] = {}
    for group, variables in groups.items():
        shapes[group] = [_signature(v) for v in variables]
        for i, variable in enumerate(variables):
            arrays[f"{group}/{i}"] = np.asarray(variable.numpy())
    meta = {"position": dataclasses.asdict(position), "shapes": shapes}
    arrays[_META] = np.array(json.dumps(meta))
    return _write_atomically(directory / STATE_FILE, arrays)


def _write_atomically(final: Path, arrays: dict[str, np.ndarray]) -> Path:
    """An npz file written to a temporary name, fsynced, then renamed over `final`."""
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


class SavedState:
    """A state file read back: the position, and the arrays to put into a model."""

    def __init__(self, path: Path):
        self.path = path
        with np.load(path, allow_pickle=False) as data:
            self.arrays = {k: data[k] for k in data.files if k != _META}
            meta = json.loads(str(data[_META]))
        self.position = Position(**meta["position"])
        self.shapes: dict[str, list[str]] = meta["shapes"]

    @property
    def has_metrics(self) -> bool:
        return "metrics" in self.shapes

    def restore(self, model, group: str) -> None:
        """Assigns one group's saved values to the model's variables of that group."""
        variables = variable_groups(model)[group]
        expected = [_signature(v) for v in variables]
        if expected != self.shapes[group]:
            raise ValueError(
                f"{self.path}: its {group} variables do not match this model "
                f"({len(self.shapes[group])} saved, {len(expected)} in the model, or shapes "
                "differ); it was written by a different model or code version"
            )
        for i, variable in enumerate(variables):
            variable.assign(self.arrays[f"{group}/{i}"])


def load_state(directory: Path) -> SavedState | None:
    """The last complete state in `directory`, or None; leftover temporary files are removed."""
    if not directory.is_dir():
        return None
    for leftover in directory.glob(".*.npz.tmp-*"):
        leftover.unlink()
    path = directory / STATE_FILE
    return SavedState(path) if path.is_file() else None


def restore_weights(state: SavedState, model) -> None:
    """The model's and the optimizer's variables (the optimizer is built first if needed)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    state.restore(model, "model")
    state.restore(model, "optimizer")


def build_metrics(model, batch) -> None:
    """Builds the compiled metrics on one batch and zeroes them. Keras builds them while
    tracing the first step; a run resumed mid-epoch needs them before it, to restore their
    running sums. Call it inside the strategy's scope."""
    x, y = batch
    model.compute_metrics(x, y, model(x, training=False), sample_weight=None)
    model.reset_metrics()


class StepCheckpoint(keras.callbacks.Callback):
    """Saves the training state every `every_steps` batches and at each epoch's end.

    Given the state a killed run left (`resume`), it puts the model's and optimizer's
    variables back when training starts and, when the save was mid-epoch, the training
    metrics' running sums at the start of that epoch. The caller skips the batches done.
    Callbacks in `stateful` keep running values through an epoch; their `get_state()` dicts
    are saved with mid-epoch states and given back with `set_state()`.
    Keep it after the callbacks that add entries to the epoch logs, so the history has them,
    and after the stateful ones, so their `on_epoch_begin` resets come before the restore.
    """

    def __init__(self, directory: Path, every_steps: int, resume: SavedState | None, stateful=()):
        super().__init__()
        self.directory = directory
        self.every_steps = every_steps
        self.stateful = {type(c).__name__: c for c in stateful}
        self.resume = resume
        self.position = resume.position if resume else Position()
        self.saves = 0

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        if self.resume is not None:
            restore_weights(self.resume, self.model)

    def on_epoch_begin(self, epoch, logs=None):
        done = self.position.step_in_epoch if epoch == self.position.epoch else 0
        if self.resume is not None:
            if self.resume.has_metrics and done:
                self.resume.restore(self.model, "metrics")
                for name, values in self.position.callbacks.items():
                    self.stateful[name].set_state(values)
            self.resume = None
        self.epoch = epoch
        # Batches are counted here, not read off the optimizer's step: a loss-scaling optimizer
        # (mixed_float16) does not count a step it skipped for overflow, and the data position
        # must count every batch consumed. A resumed epoch's `fit` starts its batch index at 0
        # after the `done` batches were skipped.
        self.done_before_fit = done
        self.saved_at = done  # the epoch's position at its last save (or at its start)

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last batch of the execution (steps_per_execution); on the epoch's last,
        # partial one it may pass the end, which only says every batch was done.
        in_epoch = self.done_before_fit + batch + 1
        if self.every_steps and in_epoch - self.saved_at >= self.every_steps:
            running = {name: c.get_state() for name, c in self.stateful.items()}
            position = Position(self.epoch, in_epoch, self._step(), self.position.history, running)
            self._save(position, with_metrics=True)
            self.saved_at = in_epoch

    def on_epoch_end(self, epoch, logs=None):
        history = {k: list(v) for k, v in self.position.history.items()}
        for key, value in (logs or {}).items():
            history.setdefault(key, []).append(float(value))
        self._save(Position(epoch + 1, 0, self._step(), history), with_metrics=False)

    def _save(self, position: Position, *, with_metrics: bool) -> None:
        save_state(self.directory, self.model, position, with_metrics=with_metrics)
        self.position = position
        self.saves += 1


def _epoch_weights_path(directory: Path, epoch: int) -> Path:
    return directory / f"weights-epoch-{epoch:04d}.npz"


class EpochWeights(keras.callbacks.Callback):
    """Saves the model's weights at the end of each of the last `count` of `epochs` epochs, for
    `average_epoch_weights`. Each file is written atomically; a resumed run rewrites an epoch's
    file with the same values. Keep it before StepCheckpoint, so an epoch counts as done only
    once its weights are on disk."""

    def __init__(self, directory: Path, epochs: int, count: int):
        super().__init__()
        self.directory = directory
        self.first = epochs - count

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.first:
            self.directory.mkdir(parents=True, exist_ok=True)
            variables = variable_groups(self.model)["model"]
            arrays = {str(i): np.asarray(v.numpy()) for i, v in enumerate(variables)}
            _write_atomically(_epoch_weights_path(self.directory, epoch + 1), arrays)


def average_epoch_weights(directory: Path, model, epochs: list[int]) -> None:
    """Sets the model's floating-point variables to their mean over the weights EpochWeights
    saved after `epochs` (1-based); integer variables (seed-generator states) keep their
    values. Averaging the last checkpoints is how Vaswani et al. (2017) made their final
    models."""
    variables = variable_groups(model)["model"]
    floating = [i for i, v in enumerate(variables) if "float" in str(v.dtype)]
    sums = {i: np.zeros(variables[i].shape, np.float64) for i in floating}
    for epoch in epochs:
        path = _epoch_weights_path(directory, epoch)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the weights of epoch {epoch} were not saved")
        with np.load(path, allow_pickle=False) as data:
            if len(data.files) != len(variables):
                raise ValueError(
                    f"{path} holds {len(data.files)} arrays, the model {len(variables)}"
                )
            for i in floating:
                value = data[str(i)]
                if value.shape != tuple(variables[i].shape):
                    raise ValueError(
                        f"{path}: array {i} has shape {value.shape}, the model "
                        f"{tuple(variables[i].shape)}"
                    )
                sums[i] += value
    for i in floating:
        variables[i].assign((sums[i] / len(epochs)).astype(variables[i].dtype))
