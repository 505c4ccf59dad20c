"""SentencePiece learning from word counts: exact pieces, reserved ids, sizes, determinism."""

import pytest
import sentencepiece

from models.sentencepiece_learner import learn_sentencepiece_model

RESERVED_TOKENS = ["[PAD]", "[UNK]", "[START]", "[END]"]

COUNTS = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
# Characters by count (weighted by word count), ties by string; "▁" starts each of the 16 words.
ALPHABET = ["e", "w", "▁", "s", "t", "l", "o", "n", "d", "i", "r"]


def sentencepiece_pieces(model):
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def _learn(model_type, vocab_size, counts=COUNTS, min_count=1):
    return learn_sentencepiece_model(
        counts.items(), vocab_size, RESERVED_TOKENS, model_type, min_count=min_count
    )


def test_bpe_merges_by_word_count():
    # e+s and es+t occur 9 times (newest 6, widest 3), then l+o, lo+w and ▁+low 7 times (low 5,
    # lower 2); the alphabet follows the merges.
    pieces = sentencepiece_pieces(_learn("bpe", 20))
    assert pieces == RESERVED_TOKENS + ["es", "est", "lo", "low", "▁low"] + ALPHABET


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_same_counts_give_a_byte_identical_model(model_type):
    shuffled = dict(reversed(list(COUNTS.items())))
    # A word listed twice has its counts added.
    split = [("low", 3), ("lower", 2), ("low", 2), ("widest", 3), ("newest", 6)]
    first = _learn(model_type, 30)
    assert _learn(model_type, 30, shuffled) == first
    assert learn_sentencepiece_model(split, 30, RESERVED_TOKENS, model_type, 1) == first


@pytest.mark.parametrize("model_type, size", [("unigram", 18), ("bpe", 48)])
def test_reserved_ids_and_size_as_upper_bound(model_type, size):
    # 100 is more than the corpus has pieces: the vocabulary stops at what it has.
    pieces = sentencepiece_pieces(_learn(model_type, 100))
    assert len(pieces) == size
    assert pieces[:4] == RESERVED_TOKENS
    assert set(ALPHABET) <= set(pieces)
    processor = sentencepiece.SentencePieceProcessor(model_proto=_learn(model_type, 100))
    ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
    assert ids == (0, 1, 2, 3)
    assert len(sentencepiece_pieces(_learn(model_type, 16))) == 16


def test_rare_words_only_add_characters():
    model = _learn("bpe", 100, min_count=3)  # "lower" (2) is rare; its "r" is nowhere else
    pieces = sentencepiece_pieces(model)
    assert "r" in pieces and not any("r" in piece for piece in pieces[4:] if piece != "r")
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    assert processor.encode("lower", out_type=str) == ["▁low", "e", "r"]


def test_no_normalization_of_its_own():
    # The default rule (nmt_nfkc) would turn the ligature and the full-width letter into "fi"
    # and "X".
    model = _learn("unigram", 30, {"ﬁne": 3, "Ｘ": 2, "x": 1})
    assert {"ﬁ", "Ｘ"} <= set(sentencepiece_pieces(model))
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    assert processor.decode(processor.encode("ﬁne Ｘ")) == "ﬁne Ｘ"


def test_size_below_the_alphabet_is_an_error():
    with pytest.raises(ValueError, match="at most 14 pieces"):
        _learn("bpe", 14)  # 4 reserved + 11 characters do not fit


def test_unknown_model_type_is_an_error():
    with pytest.raises(ValueError, match="model_type"):
        _learn("word", 30)
