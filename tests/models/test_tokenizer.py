"""The tokenizer module: exact ids, round trips and agreement with tensorflow-text's splitter."""

import tensorflow as tf
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

from models.tokenizer import (
    RESERVED_TOKENS,
    TranslationTokenizer,
    count_words,
    learn_wordpiece,
    pretokenize,
)

VOCAB = RESERVED_TOKENS + [".", ",", "The", "dog", "runs", "Mädchen", "##s", "cat", "!", "-"]


def _tokenizer():
    return TranslationTokenizer(VOCAB, VOCAB)


def test_tokenize_exact_ids():
    ids = _tokenizer().source.tokenize(tf.constant(["The dog runs.", "The cats!"]))
    # [START] The dog runs . [END] / [START] The cat ##s ! [END]
    assert ids.to_list() == [[2, 6, 7, 8, 4, 3], [2, 6, 11, 10, 12, 3]]


def test_unknown_words_map_to_unk():
    ids = _tokenizer().source.tokenize(tf.constant(["The zebra."]))
    assert ids.to_list() == [[2, 6, 1, 4, 3]]


def test_normalization_makes_nfd_input_match_nfc():
    tok = _tokenizer()
    nfc = tok.source.tokenize(tf.constant(["M\u00e4dchen"])).to_list()
    nfd = tok.source.tokenize(tf.constant(["Ma\u0308dchen"])).to_list()
    assert nfc == nfd == [[2, 9, 3]]


def test_detokenize_round_trip_and_drops_reserved():
    tok = _tokenizer()
    text = ["The dog runs.", "The cats, Mädchen!"]
    ids = tok.target.tokenize(tf.constant(text))
    assert [t.decode() for t in tok.target.detokenize(ids).numpy()] == text
    padded = tf.constant([[2, 6, 7, 3, 0, 0]], tf.int64)
    assert tok.target.detokenize(padded).numpy().tolist() == [b"The dog"]


def test_detokenize_glues_hyphens():
    tok = _tokenizer()
    ids = tok.target.tokenize(tf.constant(["dog-cat"]))
    assert ids.to_list() == [[2, 7, 13, 11, 3]]
    assert tok.target.detokenize(ids).numpy().tolist() == [b"dog-cat"]


def test_pretokenize_matches_tensorflow_text():
    texts = ["Two young, White males are outside.", 'Ein Mädchen (8) spielt: "Ball"!', "a.b-c's"]
    words = BasicTokenizer(lower_case=False).tokenize(tf.constant(texts)).to_list()
    assert [pretokenize(t) for t in texts] == [[w.decode() for w in ws] for ws in words]


def test_learned_vocab_keeps_frequent_words_whole():
    counts = count_words(["the dog runs ."] * 5 + ["the dogs run ."] * 5)
    assert counts == {"the": 10, "dog": 5, "runs": 5, ".": 10, "dogs": 5, "run": 5}
    vocab = learn_wordpiece(counts.items(), vocab_size=60, min_count=2)
    assert vocab[:4] == RESERVED_TOKENS
    tok = TranslationTokenizer(vocab, vocab)
    ids = tok.source.tokenize(tf.constant(["the dog runs ."])).to_list()[0]
    assert [vocab[i] for i in ids] == ["[START]", "the", "dog", "runs", ".", "[END]"]
