"""Export stage: a SavedModel with a string-in, string-out signature, checked in a fresh process.

The tokenizer and the decoding loop are inside the graph, so a model server needs nothing else.
The check loads the SavedModel in a new Python process that imports only `tensorflow` and
`tensorflow_text`, as a model server would, and compares its outputs with this process's.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import tensorflow as tf

from components.evaluate import load_translator, read_split
from pipeline.artifacts import write_json
from pipeline.config import ExportConfig

SAVED_MODEL_DIR = "saved_model"

# Runs in the fresh process: nothing from this project is importable there on purpose.
_CHECK_SCRIPT = """
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the TF-Text ops the graph uses
model = tf.saved_model.load(sys.argv[1])
sentences = json.loads(sys.stdin.read())
out = model.signatures["serving_default"](text=tf.constant(sentences, tf.string))
print(json.dumps([t.decode("utf-8") for t in out["translation"].numpy()]))
"""


@dataclasses.dataclass
class ExportResult:
    saved_model: str
    validation: dict


def save_translator(translator, path: Path) -> None:
    """Saves a Translator as a SavedModel whose `serving_default` is text -> translation."""
    signature = translator.translate.get_concrete_function()
    tf.saved_model.save(translator, str(path), signatures={"serving_default": signature})


def check_in_fresh_process(saved_model: Path, sentences: list[str]) -> list[str]:
    """Translations of `sentences` by the SavedModel loaded in a new Python process."""
    env_free_of_project = {"PYTHONPATH": ""}
    completed = subprocess.run(
        [sys.executable, "-c", _CHECK_SCRIPT, str(saved_model.resolve())],
        input=json.dumps(sentences),
        capture_output=True,
        text=True,
        cwd=str(saved_model),
        env={**_minimal_env(), **env_free_of_project},
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"SavedModel check failed in a fresh process:\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _minimal_env() -> dict[str, str]:
    import os

    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TF_CPP_MIN_LOG_LEVEL")
    return {k: os.environ[k] for k in keep if k in os.environ}


def export(
    cfg: ExportConfig, *, examples: Path, tokenized: Path, model: Path, out: Path
) -> ExportResult:
    """Writes `saved_model/` and `validation.json`; fails if the fresh-process check differs."""
    translator = load_translator(model, tokenized, cfg.max_extra_tokens)
    path = out / SAVED_MODEL_DIR
    save_translator(translator, path)
    sentences = [s for s, _ in read_split(examples, "test")[: cfg.num_validation_sentences]]
    in_process = [
        t.decode("utf-8")
        for t in translator.translate(tf.constant(sentences))["translation"].numpy()
    ]
    fresh = check_in_fresh_process(path, sentences)
    report = {
        "sentences": sentences,
        "in_process": in_process,
        "fresh_process": fresh,
        "identical": in_process == fresh,
        "all_non_empty": all(fresh),
    }
    write_json(out / "validation.json", report)
    if not report["identical"] or not report["all_non_empty"]:
        raise RuntimeError(f"exported model disagrees with the trained one: {report}")
    return ExportResult(str(path), report)
