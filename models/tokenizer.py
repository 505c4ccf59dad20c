"""The one tokenizer of the project: a `tf.Module` used by Beam, tf.data, evaluation and export.

WordPiece (tensorflow-text `BertTokenizer`, cased, no lower-casing so case and umlauts survive)
with separate source and target vocabularies. Ids 0..3 are reserved: padding, unknown, start
and end. Detokenization uses only core TensorFlow ops, so a model server needs no extra ops
for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import regex
import tensorflow as tf
import tensorflow_text as tf_text

from models.wordpiece_learner import learn_wordpiece_vocab

PAD, UNK, START, END = "[PAD]", "[UNK]", "[START]", "[END]"
RESERVED_TOKENS = [PAD, UNK, START, END]
PAD_ID, UNK_ID, START_ID, END_ID = range(4)

# The same split as tensorflow-text's BasicTokenizer: each punctuation character is a token,
# other runs of non-space characters are words.
_PUNCT = r"!-/:-@\[-`{-~\p{P}"
_WORD_RE = regex.compile(rf"[{_PUNCT}]|[^\s{_PUNCT}]+")

# Detokenization: glue punctuation back the way written text has it.
_ATTACH_LEFT = r" ([.,!?;:%)\]}])"
_ATTACH_RIGHT = r"([(\[{¿¡]) "
_ATTACH_BOTH = r" (['’-]) "


def pretokenize(text: str) -> list[str]:
    """Splits text into the words WordPiece sees (used for counting words in Python)."""
    return _WORD_RE.findall(text)


def learn_wordpiece(word_counts: Iterable[tuple[str, int]], vocab_size: int, min_count: int):
    """A WordPiece vocabulary (reserved tokens first) learned from word counts.

    Uses this project's learner (models/wordpiece_learner.py): on Multi30k it learns 8k per
    side in about a second where tensorflow-text's learner took over a minute.
    """
    return learn_wordpiece_vocab(word_counts, vocab_size, RESERVED_TOKENS, min_count=min_count)


def count_words(texts: Iterable[str]) -> Counter:
    """Word counts of texts as WordPiece will split them."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(pretokenize(text))
    return counts


def _lookup_table(vocab: list[str]) -> tf.lookup.StaticVocabularyTable:
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)
    )
    return tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)


class _SideTokenizer(tf.Module):
    """WordPiece for one language side."""

    def __init__(self, vocab: list[str], normalization: str):
        super().__init__()
        if vocab[: len(RESERVED_TOKENS)] != RESERVED_TOKENS:
            raise ValueError(f"vocabulary must start with {RESERVED_TOKENS}")
        self.normalization = normalization
        self.vocab = tf.Variable(vocab, trainable=False, dtype=tf.string, name="vocab")
        self.bert = tf_text.BertTokenizer(
            _lookup_table(vocab), lower_case=False, unknown_token=UNK, token_out_type=tf.int64
        )

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """[batch] strings -> [batch, (tokens)] int64 ids framed by START and END."""
        strings = tf_text.normalize_utf8(strings, self.normalization)
        pieces = self.bert.tokenize(strings).merge_dims(-2, -1)
        batch = pieces.nrows()
        start = tf.fill([batch, 1], tf.constant(START_ID, tf.int64))
        end = tf.fill([batch, 1], tf.constant(END_ID, tf.int64))
        return tf.concat([start, pieces, end], axis=1)

    def detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """[batch, tokens] ids (dense or ragged) -> [batch] strings; reserved ids are dropped."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        ids = tf.ragged.boolean_mask(ids, ids >= len(RESERVED_TOKENS))
        pieces = tf.gather(self.vocab, ids)
        text = tf.strings.reduce_join(pieces, axis=-1, separator=" ")
        text = tf.strings.regex_replace(text, " ##", "")
        text = tf.strings.regex_replace(text, _ATTACH_LEFT, r"\1")
        text = tf.strings.regex_replace(text, _ATTACH_RIGHT, r"\1")
        return tf.strings.regex_replace(text, _ATTACH_BOTH, r"\1")


class TranslationTokenizer(tf.Module):
    """Source and target WordPiece tokenizers in one trackable module.

    Example:
        tok = TranslationTokenizer.from_directory(Path("artifacts/tokenize/abc/vocab"))
        ids = tok.source.tokenize(tf.constant(["A dog runs."]))  # [[2, ..., 3]]
        text = tok.target.detokenize(ids)
    """

    def __init__(self, source_vocab: list[str], target_vocab: list[str], normalization="NFC"):
        super().__init__()
        self.source = _SideTokenizer(source_vocab, normalization)
        self.target = _SideTokenizer(target_vocab, normalization)
        self.source_vocab_size = len(source_vocab)
        self.target_vocab_size = len(target_vocab)

    @classmethod
    def from_directory(cls, directory: Path, normalization: str = "NFC") -> TranslationTokenizer:
        """Loads `source.txt` and `target.txt` vocabularies written by `save_vocab`."""
        return cls(
            read_vocab(Path(directory) / "source.txt"),
            read_vocab(Path(directory) / "target.txt"),
            normalization,
        )


def save_vocab(vocab: list[str], path: Path) -> None:
    path.write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")


def read_vocab(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()
