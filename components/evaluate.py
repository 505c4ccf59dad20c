"""Evaluate stage: translate the test split and score it with sacreBLEU (BLEU and chrF)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import sacrebleu
import tensorflow as tf

from components.records import parse_text_example, shard_paths
from components.train import MODEL_FILE
from models.tokenizer import TranslationTokenizer
from models.translator import Translator
from pipeline.artifacts import write_json
from pipeline.config import DecodingConfig, EvaluateConfig
from pipeline.progress import Progress


@dataclasses.dataclass
class EvaluateResult:
    metrics: dict


def read_split(examples: Path, split: str) -> list[tuple[str, str]]:
    """All (source, target) pairs of a split of the ingest artifact, in file order."""
    files = [str(p) for p in shard_paths(examples, split)]
    if not files:
        return []
    return [parse_text_example(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def load_translator(model_dir: Path, tokenizer_dir: Path, decoding: DecodingConfig) -> Translator:
    """The trained model (Keras safe mode) and its tokenizer, as a Translator."""
    model = keras.saving.load_model(model_dir / MODEL_FILE, safe_mode=True)
    tokenizer = TranslationTokenizer.from_directory(tokenizer_dir / "vocab")
    return Translator(
        tokenizer, model, decoding.max_extra_tokens, decoding.beam_size, decoding.length_penalty
    )


# evaluate.search -> the Translator method and the SavedModel signature it is served as.
SEARCHES = {"greedy": ("translate", "serving_default"), "beam": ("translate_beam", "beam_search")}


def translate_all(
    translator: Translator, sources: list[str], batch_size: int, search: str = "greedy"
) -> list[str]:
    """Translations of `sources`, in order, batched; sorted by length inside to pad little."""
    method, signature = SEARCHES[search]
    translate = getattr(translator, method)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outputs: list[str] = [""] * len(sources)
    progress = Progress(f"translate test split ({signature})", total=len(sources))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = tf.constant([sources[i] for i in chunk])
        for i, text in zip(chunk, translate(batch)["translation"].numpy()):
            outputs[i] = text.decode("utf-8")
        progress.update(len(chunk))
    progress.close()
    return outputs


def score(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU and chrF on detokenized text, with sacreBLEU's signatures."""
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(bleu_score.score, 4),
        "chrf": round(chrf_score.score, 4),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "exact_match": round(
            sum(h == r for h, r in zip(hypotheses, references)) / len(references), 6
        ),
        "sentences": len(references),
    }


def _headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("bleu", "chrf", "exact_match")}


def evaluate(
    cfg: EvaluateConfig,
    *,
    decoding: DecodingConfig,
    examples: Path,
    tokenized: Path,
    model: Path,
    out: Path,
) -> EvaluateResult:
    """Decodes the test split of `examples` with the trained `model`; writes metrics.json.

    The scores at its top level are those of `cfg.search`'s signature (named in `signature`);
    with `cfg.score_both`, `by_signature` holds both signatures' scores.
    """
    pairs = read_split(examples, "test")
    if not pairs:
        raise ValueError(f"the test split in {examples} is empty: raise data.split.test")
    translator = load_translator(model, tokenized, decoding)
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    hypotheses = translate_all(translator, sources, cfg.batch_size, cfg.search)
    metrics = {**score(hypotheses, references), "signature": SEARCHES[cfg.search][1]}
    if cfg.score_both:
        metrics["by_signature"] = {metrics["signature"]: _headline(metrics)}
        for other in SEARCHES.keys() - {cfg.search}:
            outputs = translate_all(translator, sources, cfg.batch_size, other)
            metrics["by_signature"][SEARCHES[other][1]] = _headline(score(outputs, references))
    write_json(out / "metrics.json", metrics)
    with open(out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for source, reference, hypothesis in zip(sources, references, hypotheses):
            row = {"source": source, "reference": reference, "translation": hypothesis}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return EvaluateResult(metrics)
