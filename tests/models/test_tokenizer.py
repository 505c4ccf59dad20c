"""The tokenizer module: exact ids, round trips and agreement with tensorflow-text's splitter."""

import io
from collections import Counter

import pytest
import sentencepiece
import tensorflow as tf
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

from models.tokenizer import (
    END_ID,
    PAD_ID,
    RESERVED_TOKENS,
    START_ID,
    UNK_ID,
    TranslationTokenizer,
    count_words,
    learn_vocab,
    learn_wordpiece,
    pretokenize,
    read_vocab,
    save_side,
    sentencepiece_pieces,
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


# SentencePiece: learned from the whitespace-split words of a few sentences.
SENTENCES = [
    "Ein Mädchen spielt mit einem Ball im Garten.",
    "Zwei Männer gehen über die Straße, während es regnet!",
    "A man's dog runs (quickly) across the street - again.",
    'Die Kinder spielen: "Fangen" und Verstecken; die Mädchen lachen?',
]
UNSEEN = ["Die Kinder rennen über die Straße.", "Spielt ihr im Garten, Männer?"]


def _sentencepiece(kind, vocab_size=120):
    counts = Counter(word for sentence in SENTENCES for word in sentence.split())
    return learn_vocab(kind, sorted(counts.items()), vocab_size, min_count=1)


@pytest.fixture(scope="module", params=["sentencepiece_unigram", "sentencepiece_bpe"])
def sentencepiece_model(request):
    return _sentencepiece(request.param)


def test_sentencepiece_round_trip_is_exact(sentencepiece_model):
    tok = TranslationTokenizer(sentencepiece_model, sentencepiece_model)
    text = SENTENCES + UNSEEN
    ids = tok.source.tokenize(tf.constant(text))
    assert ids.dtype == tf.int64
    assert all(row[0] == START_ID and row[-1] == END_ID for row in ids.to_list())
    assert UNK_ID not in ids.flat_values.numpy()
    assert [t.decode() for t in tok.target.detokenize(ids).numpy()] == text
    # The same as SentencePiece's own decoder, which the graph does not contain.
    processor = sentencepiece.SentencePieceProcessor(model_proto=sentencepiece_model)
    assert [processor.decode(row[1:-1]) for row in ids.to_list()] == text


def test_sentencepiece_bpe_exact_pieces():
    model = _sentencepiece("sentencepiece_bpe")
    tok = TranslationTokenizer(model, model)
    ids = tok.source.tokenize(tf.constant(["Die Mädchen spielen."])).to_list()[0]
    pieces = sentencepiece_pieces(model)
    # Frequent words are whole pieces ("▁Mädchen"), others share pieces ("▁spiel" + "en").
    assert [pieces[i] for i in ids] == [
        "[START]", "▁D", "ie", "▁Mädchen", "▁spiel", "en", ".", "[END]"
    ]  # fmt: skip


def test_sentencepiece_unknown_characters_normalization_and_whitespace(sentencepiece_model):
    tok = TranslationTokenizer(sentencepiece_model, sentencepiece_model)

    def ids(text):
        return tok.source.tokenize(tf.constant([text])).to_list()[0]

    assert UNK_ID in ids("Ein Mädchen €")  # "€" is not in the alphabet
    assert ids("Ma\u0308dchen") == ids("M\u00e4dchen")  # NFD input is normalized to NFC
    assert ids("Ein\tMädchen\u00a0spielt") == ids("Ein Mädchen spielt")  # any whitespace
    padded = tf.constant([ids("Ein Mädchen €") + [PAD_ID, PAD_ID]], tf.int64)
    assert tok.target.detokenize(padded).numpy().tolist() == ["Ein Mädchen ".encode()]


def test_sentencepiece_directory_round_trip(tmp_path):
    unigram, bpe = _sentencepiece("sentencepiece_unigram"), _sentencepiece("sentencepiece_bpe")
    assert save_side(unigram, tmp_path, "source") == len(sentencepiece_pieces(unigram))
    save_side(bpe, tmp_path, "target")
    assert (tmp_path / "source.model").read_bytes() == unigram
    assert read_vocab(tmp_path / "target.txt") == sentencepiece_pieces(bpe)
    loaded = TranslationTokenizer.from_directory(tmp_path)
    fresh = TranslationTokenizer(unigram, bpe)
    text = tf.constant(SENTENCES)
    for side in ("source", "target"):
        expected = getattr(fresh, side).tokenize(text).to_list()
        assert getattr(loaded, side).tokenize(text).to_list() == expected
    assert (loaded.source_vocab_size, loaded.target_vocab_size) == (
        len(sentencepiece_pieces(unigram)),
        len(sentencepiece_pieces(bpe)),
    )


def test_sentencepiece_model_with_other_reserved_ids_is_refused():
    model = io.BytesIO()  # SentencePiece's defaults: <unk> 0, <s> 1, </s> 2, no padding
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["ab abc"]),
        model_writer=model,
        vocab_size=20,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match="must be ids 0..3"):
        TranslationTokenizer(model.getvalue(), model.getvalue())


def test_a_word_over_100_bytes_is_split_not_unknown():
    # BertTokenizer's default limit (100 bytes) made such a word [UNK] though it is in the vocab.
    long_word = "\u0e09\u0e31\u0e19" * 12  # 36 Thai letters, 108 bytes in UTF-8
    tok = TranslationTokenizer(VOCAB + [long_word], VOCAB)
    ids = tok.source.tokenize(tf.constant([f"The {long_word} runs"])).to_list()
    assert ids == [[START_ID, 6, len(VOCAB), 8, END_ID]]
