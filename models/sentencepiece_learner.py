"""SentencePiece models (unigram or BPE) learned from word counts.

The tokenize stage counts whitespace-separated words in Beam; the counts reach the
`sentencepiece` trainer as ``word<TAB>count`` lines (its ``tsv`` input format) through an
iterator, so no corpus file is written and the model does not record a temporary path.

Settings the rest of the project relies on:

- the reserved tokens take ids 0..3 (padding, unknown, start, end), as for WordPiece;
- no normalization of its own (rule ``identity``): the tokenizer module normalizes Unicode in
  the graph, so training and serving see the same text;
- every character of the counted words is in the alphabet (``character_coverage`` 1.0);
- one thread: the trainer's floating-point sums depend on its thread count, so a fixed count
  makes the same counts give a byte-identical model on any machine;
- the vocabulary size is an upper bound (``hard_vocab_limit`` false): a corpus with fewer
  possible pieces gets a smaller vocabulary instead of an error, as the WordPiece learner
  stops early. When the size is reachable the pieces are the same as with a hard limit.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import sentencepiece

MODEL_TYPES = ("unigram", "bpe")


def _merge(word_counts: Iterable[tuple[str, int]], reserved: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word, count in word_counts:
        if word and word not in reserved and count > 0:
            counts[word] = counts.get(word, 0) + count
    return counts


def learn_sentencepiece_model(
    word_counts: Iterable[tuple[str, int]],
    vocab_size: int,
    reserved_tokens: list[str],
    model_type: str,
    min_count: int = 2,
) -> bytes:
    """A serialized SentencePiece model of at most `vocab_size` pieces, reserved tokens first.

    Args:
        word_counts: (word, count) pairs of whitespace-free words; repeats have counts added.
        vocab_size: the maximum vocabulary size, reserved tokens included.
        reserved_tokens: exactly four: the padding, unknown, start and end tokens (ids 0..3).
        model_type: "unigram" or "bpe".
        min_count: words counted fewer times only contribute characters to the alphabet.

    Raises:
        ValueError: for a bad argument, or when `vocab_size` cannot hold the reserved tokens
            and the alphabet.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if len(reserved_tokens) != 4:
        raise ValueError("reserved_tokens must be [pad, unk, start, end]")
    counts = _merge(word_counts, set(reserved_tokens))
    learned = sorted((w, n) for w, n in counts.items() if n >= min_count)
    rare_chars = {char for word, n in counts.items() if n < min_count for char in word}
    rare_chars -= {char for word, _ in learned for char in word}
    if not learned:
        raise ValueError(f"no word is counted at least min_count={min_count} times")
    pad, unk, start, end = reserved_tokens
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter([f"{word}\t{n}" for word, n in learned]),
            input_format="tsv",
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            required_chars="".join(sorted(rare_chars)),
            normalization_rule_name="identity",
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=pad,
            unk_piece=unk,
            bos_piece=start,
            eos_piece=end,
            num_threads=1,
            minloglevel=1,
        )
    except RuntimeError as error:
        raise ValueError(
            f"sentencepiece could not learn a {model_type} vocabulary of at most "
            f"{vocab_size} pieces: {error}"
        ) from error
    return model.getvalue()
