"""Package metadata for the Keras Transformer translation pipeline."""

from setuptools import find_packages, setup

setup(
    name="transformer-translation-pipeline",
    version="0.1.0",
    description="A reproducible TFX-style pipeline that trains Keras Transformer translators "
    "and exports SavedModels for TF Serving.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipeline", "components", "models"]),
    py_modules=["run_pipeline"],
    # Exact versions live in requirements.lock; these are the direct dependencies.
    install_requires=[
        "tensorflow==2.21.*",
        "keras==3.15.*",
        "tensorflow-text==2.21.*",
        "tensorboard==2.21.*",
        "apache-beam==2.77.*",
        "crcmod",  # Beam's TFRecord sink needs a CRC-32C implementation
        "sacrebleu",
        "tensorflow-serving-api==2.21.*",  # PredictionLog protos for the warmup file
        "pyyaml",
        "regex",
        "sentencepiece==0.2.*",  # learns SentencePiece models (tokenizer.kind: sentencepiece_*)
    ],
    extras_require={"dev": ["pytest", "ruff"]},
    entry_points={"console_scripts": ["translation-pipeline=run_pipeline:main"]},
)
