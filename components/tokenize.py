"""Tokenize stage: learn vocabularies on the train split, write token-id TFRecords.

Words are counted in Beam (so counting scales out) and the vocabulary (WordPiece or a
SentencePiece model, `tokenizer.kind`) is learned from the counts. The same
`TranslationTokenizer` then tokenizes every split inside Beam.
"""

from __future__ import annotations

import dataclasses
import json
import unicodedata
from collections import Counter
from pathlib import Path

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from components.records import (
    SPLITS,
    WriteSortedShards,
    int_feature,
    parse_text_example,
    remove_spilled_runs,
    serialize_example,
)
from components.stats import Histogram, summarize_histogram
from models.tokenizer import (
    UNK_ID,
    TranslationTokenizer,
    learn_vocab,
    save_settings,
    save_side,
    word_splitter,
)
from pipeline.artifacts import write_json
from pipeline.config import TokenizerConfig

SIDES = ("source", "target")


@dataclasses.dataclass
class TokenizeResult:
    source_vocab_size: int
    target_vocab_size: int
    counts: dict[str, int]


def _read_split(pipeline, examples: Path, split: str):
    pattern = str(examples / f"{split}-*.tfrecord")
    return (
        pipeline
        | f"Read{split}" >> beam.io.ReadFromTFRecord(pattern)
        | f"Parse{split}" >> beam.Map(parse_text_example)
    )


class CountWordsInBundle(beam.DoFn):
    """((side, word), count) for each distinct word of a bundle's pairs, emitted when the bundle
    ends: one element per distinct word and bundle instead of one per word. Its memory is one
    bundle's vocabulary."""

    def __init__(self, kind: str, normalization: str = "NFC"):
        self.kind = kind
        self.normalization = normalization

    def setup(self):
        self.split = word_splitter(self.kind)

    def start_bundle(self):
        self.counts: Counter = Counter()

    def process(self, pair: tuple[str, str]):
        for side, text in zip(SIDES, pair):
            # Normalized as the tokenizer normalizes before splitting, so every counted word
            # is one the tokenizer can meet.
            text = unicodedata.normalize(self.normalization, text)
            self.counts.update((side, word) for word in self.split(text))

    def finish_bundle(self):
        for key, count in self.counts.items():
            yield WindowedValue((key, count), MIN_TIMESTAMP, [GlobalWindow()])


def count_words_in_beam(
    examples: Path, out: Path, beam_args: list[str], kind: str, normalization: str = "NFC"
) -> dict[str, dict]:
    """{side: {word: count}} over the train split, in the Unicode `normalization` form the
    tokenizer applies, words as `kind` splits them, in Beam."""
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        _ = (
            _read_split(pipeline, examples, "train")
            | "CountInBundle" >> beam.ParDo(CountWordsInBundle(kind, normalization))
            | "Count" >> beam.CombinePerKey(sum)
            | "Json" >> beam.Map(lambda kv: json.dumps([kv[0][0], kv[0][1], kv[1]]))
            | "Write" >> beam.io.WriteToText(str(out / "_word_counts"), file_name_suffix=".jsonl")
        )
    counts: dict[str, dict] = {side: {} for side in SIDES}
    for path in sorted(out.glob("_word_counts*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            side, word, count = json.loads(line)
            counts[side][word] = count
        path.unlink()
    return counts


class TokenizePairs(beam.DoFn):
    """Tokenizes batches of (source, target) with the tokenizer loaded once per worker."""

    def __init__(self, vocab_dir: str, normalization: str):
        self.vocab_dir = vocab_dir
        self.normalization = normalization

    def setup(self):
        self.tokenizer = TranslationTokenizer.from_directory(
            Path(self.vocab_dir), self.normalization
        )

    def process(self, batch: list[tuple[str, str]]):
        sources = self.tokenizer.source.tokenize(tf.constant([s for s, _ in batch])).to_list()
        targets = self.tokenizer.target.tokenize(tf.constant([t for _, t in batch])).to_list()
        for (source, target), source_ids, target_ids in zip(batch, sources, targets):
            features = {
                "source_ids": int_feature(source_ids),
                "target_ids": int_feature(target_ids),
            }
            example = tf.train.Example(features=tf.train.Features(feature=features))
            yield f"{source}\t{target}", serialize_example(example), source_ids, target_ids


def _token_stats(tokenized, split: str):
    def per_side(item):
        _, _, source_ids, target_ids = item
        for side, ids in (("source", source_ids), ("target", target_ids)):
            yield (split, side, "length"), len(ids)
            yield (split, side, "unknown"), sum(1 for i in ids if i == UNK_ID)

    return (
        tokenized
        | f"Stats{split}" >> beam.FlatMap(per_side)
        | f"Histogram{split}" >> beam.CombinePerKey(Histogram())
        | f"StatsJson{split}" >> beam.MapTuple(lambda key, hist: json.dumps([list(key), hist]))
    )


def tokenize_splits(
    examples: Path, out: Path, cfg: TokenizerConfig, beam_args: list[str], num_shards: int
) -> None:
    """Writes `<split>-*.tfrecord` with int64 `source_ids`/`target_ids` and `_token_stats`."""
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        stats = []
        for split in SPLITS:
            tokenized = (
                _read_split(pipeline, examples, split)
                | f"Batch{split}" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
                | f"Tokenize{split}"
                >> beam.ParDo(TokenizePairs(str(out / "vocab"), cfg.normalization))
            )
            _ = (
                tokenized
                | f"Key{split}" >> beam.Map(lambda item: (item[0], item[1]))
                | f"Write{split}" >> WriteSortedShards(str(out / split), num_shards)
            )
            stats.append(_token_stats(tokenized, split))
        _ = (
            stats
            | "AllStats" >> beam.Flatten()
            | "WriteStats"
            >> beam.io.WriteToText(str(out / "_token_stats"), file_name_suffix=".jsonl")
        )
    remove_spilled_runs(out)


def _collect_token_stats(out: Path) -> dict:
    histograms: dict = {}
    for path in sorted(out.glob("_token_stats*.jsonl")):
        for line in path.read_text().splitlines():
            (split, side, kind), hist = json.loads(line)
            histograms.setdefault(split, {}).setdefault(side, {})[kind] = hist
        path.unlink()
    stats: dict = {}
    for split, sides in histograms.items():
        for side, kinds in sides.items():
            lengths = summarize_histogram(kinds["length"])
            tokens = sum(int(k) * v for k, v in kinds["length"].items())
            unknown = sum(int(k) * v for k, v in kinds["unknown"].items())
            stats.setdefault(split, {})[side] = {
                "tokens": tokens,
                "unknown_rate": round(unknown / max(tokens, 1), 6),
                "length": lengths,
            }
    return stats


def tokenize(
    cfg: TokenizerConfig, *, examples: Path, out: Path, beam_args: list[str]
) -> TokenizeResult:
    """Runs the tokenize stage on the ingest artifact at `examples`."""
    counts = count_words_in_beam(examples, out, beam_args, cfg.kind, cfg.normalization)
    sizes = {"source": cfg.source_vocab_size, "target": cfg.target_vocab_size}
    (out / "vocab").mkdir(parents=True, exist_ok=True)
    learn_from = counts  # the statistics below stay per side
    if cfg.shared_vocab:
        merged = dict(counts["source"])
        for word, count in counts["target"].items():
            merged[word] = merged.get(word, 0) + count
        learn_from = {side: merged for side in SIDES}
    vocab_sizes, learned = {}, {}
    for side in SIDES:
        if cfg.shared_vocab and side == "target":
            vocab = learned["source"]  # learned once; the same vocabulary for both sides
        else:
            # Sorted so the learner sees the same order in every run.
            words = sorted(learn_from[side].items())
            key = "source_vocab_size (shared)" if cfg.shared_vocab else f"{side}_vocab_size"
            try:
                vocab = learn_vocab(cfg.kind, words, sizes[side], cfg.min_count)
            except ValueError as error:
                raise ValueError(f"tokenizer.{key}={sizes[side]}: {error}") from None
        learned[side] = vocab
        vocab_sizes[side] = save_side(vocab, out / "vocab", side)
    save_settings(out / "vocab", cfg.normalization)
    num_shards = max(1, len(list(examples.glob("train-*.tfrecord"))))
    tokenize_splits(examples, out, cfg, beam_args, num_shards)
    stats = _collect_token_stats(out)
    stats["vocab_size"] = vocab_sizes
    stats["train_word_types"] = {side: len(counts[side]) for side in SIDES}
    stats["top_words"] = {
        side: [[w, n] for w, n in sorted(counts[side].items(), key=lambda i: (-i[1], i[0]))[:20]]
        for side in SIDES
    }
    write_json(out / "token_statistics.json", stats)
    counts_per_split = {
        s: stats.get(s, {}).get("source", {}).get("length", {}).get("count", 0) for s in SPLITS
    }
    return TokenizeResult(vocab_sizes["source"], vocab_sizes["target"], counts_per_split)
