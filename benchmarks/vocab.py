"""Vocabulary benchmark: the fast WordPiece learner against tensorflow-text's learner.

    python benchmarks/vocab.py                    # from the repository root
    python benchmarks/vocab.py --vocab-size 8000 --repeats 3 --tf-repeats 1

Counts the words of Multi30k train (English and German, `models.tokenizer.count_words`), then
learns an 8k vocabulary per side with `models.wordpiece_learner.learn_wordpiece_vocab` and with
`wordpiece_tokenizer_learner_lib.learn(sorted(counts.items()), 8000, reserved, lower_thresh=2)`
from the same counts, in one process. Seconds are wall-clock for both sides together (the best
of the repeats); tokens per word is the count-weighted average number of WordPiece tokens of a
training word, tokenized by tensorflow-text's `BertTokenizer(lower_case=False)` with the learned
vocabulary, over both sides. Writes benchmarks/results/vocab.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "multi30k"
SIDES = ("en", "de")


def tokens_and_unknowns(vocab: list[str], counts: dict[str, int], unknown: str) -> tuple[int, int]:
    """Count-weighted WordPiece tokens of the counted words, and how many of them are unknown."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)
        ),
        num_oov_buckets=1,
    )
    bert = tf_text.BertTokenizer(
        table, lower_case=False, unknown_token=unknown, token_out_type=tf.int64
    )
    words = sorted(counts)
    ids = bert.tokenize(tf.constant(words)).merge_dims(-2, -1)
    lengths = ids.row_lengths().numpy().tolist()
    unk_id = vocab.index(unknown)
    rows = ids.value_rowids().numpy()[ids.flat_values.numpy() == unk_id].tolist()
    tokens = sum(counts[w] * n for w, n in zip(words, lengths))
    unknowns = sum(counts[words[row]] for row in rows)
    return tokens, unknowns


def timed(learn, counts_by_side: dict, repeats: int) -> tuple[float, dict]:
    """Best wall-clock seconds over `repeats` runs of learning every side, and the vocabularies."""
    best, vocabs = float("inf"), {}
    for _ in range(repeats):
        started = time.perf_counter()
        vocabs = {side: learn(counts) for side, counts in counts_by_side.items()}
        best = min(best, time.perf_counter() - started)
    return best, vocabs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fast learner")
    parser.add_argument("--tf-repeats", type=int, default=1, help="runs of the tf-text learner")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vocab.json")
    args = parser.parse_args()

    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as tf_learner

    from models.tokenizer import RESERVED_TOKENS, UNK, count_words
    from models.wordpiece_learner import learn_wordpiece_vocab

    counts_by_side = {}
    for side in SIDES:
        with open(args.data / f"train.{side}", encoding="utf-8") as lines:
            counts_by_side[side] = dict(count_words(line.rstrip("\n") for line in lines))

    def fast(counts):
        return learn_wordpiece_vocab(counts.items(), args.vocab_size, RESERVED_TOKENS)

    def tf_text(counts):
        return list(
            tf_learner.learn(
                sorted(counts.items()), args.vocab_size, RESERVED_TOKENS, lower_thresh=2
            )
        )

    results, per_side = {}, {side: {} for side in SIDES}
    for name, learn, repeats in (
        ("fast", fast, args.repeats),
        ("tf_text", tf_text, args.tf_repeats),
    ):
        seconds, vocabs = timed(learn, counts_by_side, repeats)
        tokens = words = unknowns = 0
        for side in SIDES:
            counts = counts_by_side[side]
            side_tokens, side_unknowns = tokens_and_unknowns(vocabs[side], counts, UNK)
            side_words = sum(counts.values())
            per_side[side][name] = {
                "vocab_size": len(vocabs[side]),
                "tokens_per_word": round(side_tokens / side_words, 4),
                "unknown_tokens": side_unknowns,
            }
            tokens, words, unknowns = (
                tokens + side_tokens,
                words + side_words,
                unknowns + side_unknowns,
            )
        results[name] = {
            "seconds": round(seconds, 3),
            "tokens_per_word": round(tokens / words, 4),
            "unknown_tokens": unknowns,
        }

    print(f"{'learner':<10}{'seconds (en+de)':>17}{'tokens/word':>13}{'[UNK]':>7}  vocab en/de")
    for name, row in results.items():
        sizes = "/".join(str(per_side[side][name]["vocab_size"]) for side in SIDES)
        print(
            f"{name:<10}{row['seconds']:>17.3f}{row['tokens_per_word']:>13.4f}"
            f"{row['unknown_tokens']:>7}  {sizes}"
        )
    for side in SIDES:
        cells = "  ".join(
            f"{name} {per_side[side][name]['tokens_per_word']:.4f}" for name in results
        )
        print(f"  {side}: tokens/word {cells}")

    report = {
        "vocab_learn_seconds": results["fast"]["seconds"],
        "tf_text_learner_seconds": results["tf_text"]["seconds"],
        "tokens_per_word": {name: row["tokens_per_word"] for name, row in results.items()},
        "vocab_size": args.vocab_size,
        "repeats": {"fast": args.repeats, "tf_text": args.tf_repeats},
        "per_side": per_side,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
