"""Shared test settings: quiet TensorFlow, a local Beam runner and small helpers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The in-process runner: never tries to download a runner binary.
BEAM_ARGS = ["--runner=FnApiRunner", "--direct_running_mode=in_memory"]
