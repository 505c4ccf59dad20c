"""The one tokenizer of the project: a `tf.Module` used by Beam, tf.data, evaluation and export.

A source and a target side (separate or shared vocabularies) of one kind:

- WordPiece (tensorflow-text `BertTokenizer`, cased, no lower-casing so case and umlauts
  survive) on punctuation-split words; its vocabulary is a token list (`<side>.txt`).
- SentencePiece, unigram or BPE (tensorflow-text `SentencepieceTokenizer`) on whitespace-split
  words; its model is a serialized proto (`<side>.model`, its pieces listed in `<side>.txt`).
  Detokenization gives ordinary text back exactly.

Ids 0..3 are reserved for both: padding, unknown, start and end. Unicode normalization runs in
the graph first. Detokenization uses only core TensorFlow ops, so a model server needs no
extra ops for it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import regex
import sentencepiece
import tensorflow as tf
import tensorflow_text as tf_text

from models.sentencepiece_learner import learn_sentencepiece_model
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

# Python's whitespace (`str.split`, which the ingest stage and SentencePiece word counts use)
# in RE2 syntax: SentencePiece itself only separates words at spaces.
_WHITESPACE = r"[\t-\r\x{1c}-\x{1f}\x{85}\p{Z}]+"
# SentencePiece's word-start marker, a space in the text.
_WORD_START = "\u2581"

# WordPiece splits words up to this many UTF-8 bytes into pieces; a longer one is [UNK].
MAX_BYTES_PER_WORD = 1024

SENTENCEPIECE_MODEL_TYPES = {"sentencepiece_unigram": "unigram", "sentencepiece_bpe": "bpe"}


def pretokenize(text: str) -> list[str]:
    """Splits text into the words WordPiece sees (used for counting words in Python)."""
    return _WORD_RE.findall(text)


def learn_wordpiece(word_counts: Iterable[tuple[str, int]], vocab_size: int, min_count: int):
    """A WordPiece vocabulary (reserved tokens first) learned from word counts.

    Uses this project's learner (models/wordpiece_learner.py): on Multi30k it learns 8k per
    side in about a second where tensorflow-text's learner took over a minute.
    """
    return learn_wordpiece_vocab(word_counts, vocab_size, RESERVED_TOKENS, min_count=min_count)


def learn_vocab(
    kind: str, word_counts: Iterable[tuple[str, int]], vocab_size: int, min_count: int
) -> list[str] | bytes:
    """One side's vocabulary for `tokenizer.kind`: WordPiece tokens or a SentencePiece model.

    SentencePiece models come from models/sentencepiece_learner.py (reserved tokens at ids
    0..3, no normalization of their own, deterministic, `vocab_size` an upper bound).
    """
    if kind == "wordpiece":
        return learn_wordpiece(word_counts, vocab_size, min_count)
    model_type = SENTENCEPIECE_MODEL_TYPES[kind]
    return learn_sentencepiece_model(
        word_counts, vocab_size, RESERVED_TOKENS, model_type, min_count=min_count
    )


def word_splitter(kind: str) -> Callable[[str], list[str]]:
    """How `tokenizer.kind` splits text into the words its vocabulary is learned from."""
    return pretokenize if kind == "wordpiece" else str.split


def count_words(texts: Iterable[str]) -> Counter:
    """Word counts of texts as WordPiece will split them."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(pretokenize(text))
    return counts


def sentencepiece_pieces(model: bytes) -> list[str]:
    """The pieces of a serialized SentencePiece model, in id order."""
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def _lookup_table(vocab: list[str]) -> tf.lookup.StaticVocabularyTable:
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)
    )
    return tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)


def _check_reserved(vocab: list[str]) -> None:
    if vocab[: len(RESERVED_TOKENS)] != RESERVED_TOKENS:
        raise ValueError(f"vocabulary must start with {RESERVED_TOKENS}")


def _non_reserved_pieces(vocab: tf.Variable, ids) -> tf.RaggedTensor:
    """[batch, tokens] ids (dense or ragged) -> their pieces, reserved ids dropped."""
    if not isinstance(ids, tf.RaggedTensor):
        ids = tf.RaggedTensor.from_tensor(ids)
    ids = tf.ragged.boolean_mask(ids, ids >= len(RESERVED_TOKENS))
    return tf.gather(vocab, ids)


class _WordPieceSide(tf.Module):
    """WordPiece for one language side."""

    def __init__(self, vocab: list[str], normalization: str):
        super().__init__()
        _check_reserved(vocab)
        self.normalization = normalization
        self.vocab = tf.Variable(vocab, trainable=False, dtype=tf.string, name="vocab")
        self.bert = tf_text.BertTokenizer(
            _lookup_table(vocab),
            lower_case=False,
            unknown_token=UNK,
            token_out_type=tf.int64,
            # The default, 100 bytes, made longer words [UNK] even with all their pieces in
            # the vocabulary (a 34-letter Thai word is 102 bytes).
            max_bytes_per_word=MAX_BYTES_PER_WORD,
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
        pieces = _non_reserved_pieces(self.vocab, ids)
        text = tf.strings.reduce_join(pieces, axis=-1, separator=" ")
        text = tf.strings.regex_replace(text, " ##", "")
        text = tf.strings.regex_replace(text, _ATTACH_LEFT, r"\1")
        text = tf.strings.regex_replace(text, _ATTACH_RIGHT, r"\1")
        return tf.strings.regex_replace(text, _ATTACH_BOTH, r"\1")


class _SentencePieceSide(tf.Module):
    """SentencePiece (unigram or BPE) for one language side, from a serialized model."""

    def __init__(self, model: bytes, normalization: str):
        super().__init__()
        processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        special = [processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()]
        if special != [PAD_ID, UNK_ID, START_ID, END_ID]:
            raise ValueError(f"pad, unknown, start and end must be ids 0..3, not {special}")
        pieces = sentencepiece_pieces(model)
        _check_reserved(pieces)
        self.normalization = normalization
        self.vocab = tf.Variable(pieces, trainable=False, dtype=tf.string, name="vocab")
        # The model adds its own start (bos) and end (eos) ids: START_ID and END_ID.
        self.tokenizer = tf_text.SentencepieceTokenizer(model, add_bos=True, add_eos=True)

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """[batch] strings -> [batch, (tokens)] int64 ids framed by START and END."""
        strings = tf_text.normalize_utf8(strings, self.normalization)
        strings = tf.strings.regex_replace(strings, _WHITESPACE, " ")
        return tf.cast(self.tokenizer.tokenize(strings), tf.int64)

    def detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """[batch, tokens] ids (dense or ragged) -> [batch] strings; reserved ids are dropped.

        What SentencePiece's own decoder does for this project's models, in core ops: join the
        pieces, turn word-start markers into spaces, drop the first word's.
        """
        text = tf.strings.reduce_join(_non_reserved_pieces(self.vocab, ids), axis=-1)
        text = tf.strings.regex_replace(text, _WORD_START, " ")
        return tf.strings.regex_replace(text, "^ ", "")


def _side(vocab: list[str] | bytes, normalization: str) -> tf.Module:
    if isinstance(vocab, bytes):
        return _SentencePieceSide(vocab, normalization)
    return _WordPieceSide(vocab, normalization)


class TranslationTokenizer(tf.Module):
    """Source and target tokenizers (WordPiece or SentencePiece) in one trackable module.

    Each vocabulary is a WordPiece token list or a serialized SentencePiece model (bytes).

    Example:
        tok = TranslationTokenizer.from_directory(Path("artifacts/tokenize/abc/vocab"))
        ids = tok.source.tokenize(tf.constant(["A dog runs."]))  # [[2, ..., 3]]
        text = tok.target.detokenize(ids)
    """

    def __init__(
        self,
        source_vocab: list[str] | bytes,
        target_vocab: list[str] | bytes,
        normalization: str = "NFC",
    ):
        super().__init__()
        self.source = _side(source_vocab, normalization)
        self.target = _side(target_vocab, normalization)
        self.source_vocab_size = int(self.source.vocab.shape[0])
        self.target_vocab_size = int(self.target.vocab.shape[0])

    @classmethod
    def from_directory(
        cls, directory: Path, normalization: str | None = None
    ) -> TranslationTokenizer:
        """Loads the source and target vocabularies written by `save_side`, with the
        normalization `save_settings` recorded (NFC when there is no record)."""
        directory = Path(directory)
        if normalization is None:
            settings = directory / SETTINGS_FILE
            stored = json.loads(settings.read_text()) if settings.is_file() else {}
            normalization = stored.get("normalization", "NFC")
        source, target = read_side(directory, "source"), read_side(directory, "target")
        return cls(source, target, normalization)


SETTINGS_FILE = "tokenizer.json"


def save_settings(directory: Path, normalization: str) -> None:
    """Records the Unicode normalization beside the vocabularies, so every stage that loads
    them (training, evaluation, the SavedModel) normalizes text as the tokenize stage did."""
    (directory / SETTINGS_FILE).write_text(json.dumps({"normalization": normalization}) + "\n")


def save_side(vocab: list[str] | bytes, directory: Path, side: str) -> int:
    """Writes one side's `<side>.txt` (token n on line n) and, for SentencePiece, its
    `<side>.model`; returns the vocabulary size."""
    if isinstance(vocab, bytes):
        (directory / f"{side}.model").write_bytes(vocab)
        vocab = sentencepiece_pieces(vocab)
    save_vocab(vocab, directory / f"{side}.txt")
    return len(vocab)


def read_side(directory: Path, side: str) -> list[str] | bytes:
    """The SentencePiece model `<side>.model` if there is one, else WordPiece `<side>.txt`."""
    model = directory / f"{side}.model"
    return model.read_bytes() if model.is_file() else read_vocab(directory / f"{side}.txt")


def save_vocab(vocab: list[str], path: Path) -> None:
    path.write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")


def read_vocab(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()
