"""The tokenize stage on a small ingested corpus: counts, vocabularies and token ids."""

import json
from collections import Counter

import pytest
import tensorflow as tf

from components.ingest import ingest
from components.input_pipeline import load_token_pairs
from components.records import parse_text_example, shard_paths
from components.tokenize import SIDES, CountWordsInBundle, count_words_in_beam, tokenize
from models.tokenizer import (
    UNK_ID,
    TranslationTokenizer,
    count_words,
    read_vocab,
    sentencepiece_pieces,
)
from pipeline.config import DataConfig, TokenizerConfig
from tests.conftest import BEAM_ARGS


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    ingest(DataConfig(builtin_pairs=300, num_shards=2), out=out, seed=3, beam_args=BEAM_ARGS)
    return out


def _texts(directory, split):
    files = [str(p) for p in shard_paths(directory, split)]
    return [parse_text_example(r.numpy()) for r in tf.data.TFRecordDataset(files)]


@pytest.mark.parametrize("shared", [False, True])
def test_token_ids_are_the_tokenizer_output_for_every_row(examples, tmp_path, shared):
    sizes = dict(source_vocab_size=1500, target_vocab_size=1500)
    cfg = TokenizerConfig(min_count=1, shared_vocab=shared, **sizes)
    result = tokenize(cfg, examples=examples, out=tmp_path, beam_args=BEAM_ARGS)
    ingested = json.loads((examples / "statistics.json").read_text())["count"]
    assert result.counts == ingested
    source_vocab = read_vocab(tmp_path / "vocab" / "source.txt")
    target_vocab = read_vocab(tmp_path / "vocab" / "target.txt")
    assert (source_vocab == target_vocab) is shared
    tokenizer = TranslationTokenizer.from_directory(tmp_path / "vocab")
    pairs = _texts(examples, "train")
    expected = {
        (tuple(s), tuple(t))
        for s, t in zip(
            tokenizer.source.tokenize(tf.constant([p[0] for p in pairs])).to_list(),
            tokenizer.target.tokenize(tf.constant([p[1] for p in pairs])).to_list(),
        )
    }
    written = {
        (tuple(s.numpy()), tuple(t.numpy()))
        for s, t in load_token_pairs(tmp_path, "train", max_length=1000)
    }
    assert written == expected and len(written) == len(pairs)
    stats = json.loads((tmp_path / "token_statistics.json").read_text())
    # Learned on train with min_count 1: every train word is in the vocabulary.
    assert stats["train"]["source"]["unknown_rate"] == 0.0
    assert stats["train"]["target"]["tokens"] == sum(len(t) for _, t in expected)
    # Word statistics stay per side, a shared vocabulary or not.
    for side, words in (
        ("source", count_words(p[0] for p in pairs)),
        ("target", count_words(p[1] for p in pairs)),
    ):
        top = sorted(words.items(), key=lambda item: (-item[1], item[0]))[:20]
        assert stats["top_words"][side] == [list(item) for item in top]
        assert stats["train_word_types"][side] == len(words)


@pytest.mark.parametrize(
    "kind, shared", [("sentencepiece_unigram", False), ("sentencepiece_bpe", True)]
)
def test_sentencepiece_ids_statistics_and_round_trip(examples, tmp_path, kind, shared):
    cfg = TokenizerConfig(
        kind=kind, source_vocab_size=500, target_vocab_size=500, min_count=1, shared_vocab=shared
    )
    result = tokenize(cfg, examples=examples, out=tmp_path, beam_args=BEAM_ARGS)
    models = {side: (tmp_path / "vocab" / f"{side}.model").read_bytes() for side in SIDES}
    assert (models["source"] == models["target"]) is shared
    sizes = [len(sentencepiece_pieces(models[side])) for side in SIDES]
    assert [result.source_vocab_size, result.target_vocab_size] == sizes
    assert all(size <= 500 for size in sizes)
    tokenizer = TranslationTokenizer.from_directory(tmp_path / "vocab")
    pairs = _texts(examples, "train")
    sources = tokenizer.source.tokenize(tf.constant([s for s, _ in pairs]))
    targets = tokenizer.target.tokenize(tf.constant([t for _, t in pairs]))
    expected = {(tuple(s), tuple(t)) for s, t in zip(sources.to_list(), targets.to_list())}
    written = {
        (tuple(s.numpy()), tuple(t.numpy()))
        for s, t in load_token_pairs(tmp_path, "train", max_length=1000)
    }
    assert written == expected and len(written) == len(pairs)
    # Token ids back to text: every train sentence exactly.
    assert [t.decode() for t in tokenizer.target.detokenize(targets).numpy()] == [
        t for _, t in pairs
    ]
    stats = json.loads((tmp_path / "token_statistics.json").read_text())
    assert stats["vocab_size"] == dict(zip(SIDES, sizes))
    assert stats["train"]["source"]["unknown_rate"] == 0.0
    assert stats["train"]["target"]["tokens"] == sum(len(t) for t in targets.to_list())
    test_ids = tokenizer.source.tokenize(tf.constant([s for s, _ in _texts(examples, "test")]))
    unknown = (test_ids.flat_values == UNK_ID).numpy().sum() / test_ids.flat_values.shape[0]
    assert stats["test"]["source"]["unknown_rate"] == round(unknown, 6)
    # SentencePiece learns from whitespace-separated words: those are the counted words, per
    # side, a shared vocabulary or not.
    words = Counter(w for s, _ in pairs for w in s.split())
    top = sorted(words.items(), key=lambda item: (-item[1], item[0]))[:20]
    assert stats["top_words"]["source"] == [list(item) for item in top]
    assert stats["train_word_types"]["source"] == len(words)


def test_loaded_tokenizer_normalizes_as_the_stage_did(examples, tmp_path):
    cfg = TokenizerConfig(
        min_count=1, source_vocab_size=1500, target_vocab_size=1500, normalization="NFKC"
    )
    tokenize(cfg, examples=examples, out=tmp_path, beam_args=BEAM_ARGS)
    tokenizer = TranslationTokenizer.from_directory(tmp_path / "vocab")
    # NFKC folds the ligature and the full-width letter; NFC (the old default) would not.
    folded, plain = tokenizer.source.tokenize(tf.constant(["ﬁne Ｘ", "fine X"])).to_list()
    assert folded == plain
    nfc = TranslationTokenizer.from_directory(tmp_path / "vocab", "NFC")
    assert nfc.source.tokenize(tf.constant(["ﬁne Ｘ"])).to_list()[0] != plain


@pytest.mark.parametrize(
    "beam_args",
    [
        BEAM_ARGS,
        ["--runner=FnApiRunner", "--direct_running_mode=multi_processing"]
        + ["--direct_num_workers=2"],
    ],
    ids=["in_process", "two_worker_processes"],
)
def test_word_counts_from_beam_equal_a_direct_count(examples, tmp_path, beam_args):
    # Counted per bundle, then summed per word: the totals must be exact whatever the bundles.
    pairs = _texts(examples, "train")
    counts = count_words_in_beam(examples, tmp_path, beam_args, "wordpiece")
    assert counts["source"] == dict(count_words(s for s, _ in pairs))
    assert counts["target"] == dict(count_words(t for _, t in pairs))
    assert sum(counts["source"].values()) > len(pairs)
    assert not list(tmp_path.glob("_word_counts*"))


def test_words_are_counted_in_the_tokenizers_normalization_form():
    # "Mädchen" written precomposed (NFC) and decomposed (NFD) is one word after normalizing.
    nfc, nfd = "M\u00e4dchen", "Ma\u0308dchen"
    counter = CountWordsInBundle("wordpiece", "NFD")
    counter.setup()
    counter.start_bundle()
    for pair in ((nfc, "x"), (nfd, "x")):
        counter.process(pair)
    counted = {value.value[0]: value.value[1] for value in counter.finish_bundle()}
    assert counted == {("source", nfd): 2, ("target", "x"): 2}
