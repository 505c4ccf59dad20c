"""Named model sizes. `base` and `big` are those of Vaswani et al. (2017), table 3."""

from __future__ import annotations

# name -> (num_layers, d_model, num_heads, dff)
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (1, 32, 2, 64),  # tests
    "small": (2, 128, 4, 256),  # the default: the built-in corpus in minutes on a CPU
    "tutorial": (4, 128, 8, 512),  # the TensorFlow Transformer tutorial's model
    "base": (6, 512, 8, 2048),
    "big": (6, 1024, 16, 4096),
}


def preset_architecture(name: str) -> dict[str, int]:
    """The architecture fields of a preset, as TrainConfig / Transformer keyword arguments."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
    num_layers, d_model, num_heads, dff = PRESETS[name]
    return {"num_layers": num_layers, "d_model": d_model, "num_heads": num_heads, "dff": dff}
