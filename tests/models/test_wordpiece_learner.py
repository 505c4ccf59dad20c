"""The fast WordPiece learner: exact vocabularies, invariants and BertTokenizer round trips."""

import random

import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from models.tokenizer import count_words
from models.wordpiece_learner import learn_wordpiece_vocab

RESERVED = ["[PAD]", "[UNK]"]
COUNTS = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
# Characters by count (weighted by word count), ties by string: e17 w16 s9 t9 l7 o7 n6 d3 i3 r2.
CHARS = ["e", "w", "s", "t", "l", "o", "n", "d", "i", "r"]
ALPHABET = CHARS + ["##" + c for c in CHARS]

TEXT = [
    "Ein Mädchen spielt mit einem Ball im Garten.",
    "Zwei Männer gehen über die Straße, während es regnet!",
    "A little girl climbing into a wooden playhouse.",
    "Several men in hard hats are operating a giant pulley system.",
    "Die Kinder spielen im Garten; die Mädchen lachen.",
    "A man's dog runs (quickly) across the street - again.",
]


def _bert(vocab):
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)
        ),
        num_oov_buckets=1,
    )
    return tf_text.BertTokenizer(table, lower_case=False, token_out_type=tf.int64)


def test_exact_vocab_full_budget():
    # Merges by pair count, ties by string: ##e+##s (9) before ##s+##t (9), then ##es+##t,
    # ##o+##w and l+##ow (7), ##e+##w, ##ew+##est and n+##ewest (6), ##d/##i/w (3), ##e+##r and
    # low+##er (2). The 4 pieces still in use are kept; the 2 spare slots take the earliest
    # of the others. All in learned order.
    vocab = learn_wordpiece_vocab(COUNTS.items(), 28, RESERVED)
    assert vocab == RESERVED + ALPHABET + ["##es", "##est", "low", "newest", "widest", "lower"]
    everything = learn_wordpiece_vocab(COUNTS.items(), 100, RESERVED)
    assert everything == RESERVED + ALPHABET + [
        "##es",
        "##est",
        "##ow",
        "low",
        "##ew",
        "##ewest",
        "newest",
        "##dest",
        "##idest",
        "widest",
        "##er",
        "lower",
    ]


@pytest.mark.parametrize(
    ("vocab_size", "learned"),
    [
        (22, []),
        (24, ["##est", "low"]),
        (25, ["low", "newest", "widest"]),
        (26, ["low", "newest", "widest", "lower"]),
    ],
)
def test_exact_vocab_small_budgets(vocab_size, learned):
    # Merging stops before the pieces in use would overflow the budget.
    assert learn_wordpiece_vocab(COUNTS.items(), vocab_size, RESERVED) == (
        RESERVED + ALPHABET + learned
    )


def test_deterministic_under_reordering_and_split_counts():
    items = sorted(count_words(TEXT).items())
    expected = learn_wordpiece_vocab(items, 120, RESERVED, min_count=1)
    rng = random.Random(0)
    for _ in range(5):
        shuffled = list(items)
        rng.shuffle(shuffled)
        assert learn_wordpiece_vocab(shuffled, 120, RESERVED, min_count=1) == expected
    # A word listed twice counts once with the sum of its counts.
    counts = [("low", 3), ("newest", 6), ("widest", 3), ("lower", 2), ("low", 2)]
    assert learn_wordpiece_vocab(counts, 28, RESERVED) == learn_wordpiece_vocab(
        COUNTS.items(), 28, RESERVED
    )
    # A generator works as well as a list.
    assert learn_wordpiece_vocab(iter(items), 120, RESERVED, min_count=1) == expected


@pytest.mark.parametrize("vocab_size", [90, 120, 200, 1000])
def test_reserved_first_size_bound_and_alphabet(vocab_size):
    reserved = ["[PAD]", "[UNK]", "[START]", "[END]"]
    counts = count_words(TEXT)
    counts["Überraschung"] = 1  # rare: its characters still join the alphabet
    vocab = learn_wordpiece_vocab(counts.items(), vocab_size, reserved, min_count=1)
    assert vocab[:4] == reserved
    assert len(vocab) <= vocab_size
    assert len(set(vocab)) == len(vocab)
    for char in set("".join(counts)):
        assert char in vocab and "##" + char in vocab
    # All merges of this corpus give 238 tokens: smaller budgets are filled.
    if vocab_size < 1000:
        assert len(vocab) == vocab_size


@pytest.mark.parametrize(("vocab_size", "min_count"), [(86, 2), (95, 2), (150, 1), (400, 1)])
def test_round_trip_through_bert_tokenizer(vocab_size, min_count):
    counts = count_words(TEXT)
    words = sorted(counts)
    vocab = learn_wordpiece_vocab(counts.items(), vocab_size, ["[PAD]", "[UNK]"], min_count)
    assert len(vocab) <= vocab_size
    bert = _bert(vocab)
    ids = bert.tokenize(tf.constant(words)).merge_dims(-2, -1)
    assert ids.flat_values.numpy().min() >= 2  # neither [PAD] nor [UNK]
    assert ids.flat_values.numpy().max() < len(vocab)
    back = bert.detokenize(ids).to_list()
    assert [[w.decode() for w in row] for row in back] == [[w] for w in words]
    pieces = dict(zip(words, ids.row_lengths().numpy().tolist()))
    if vocab_size == 86:  # the alphabet alone: one piece per character
        assert pieces == {w: len(w) for w in words}
    if vocab_size == 400:  # room for every word: each is one piece
        assert set(pieces.values()) == {1}


def test_min_count_only_limits_multi_character_pieces():
    counts = dict(COUNTS, zap=1)
    alphabet = CHARS + ["a", "p", "z"]
    alphabet += ["##" + c for c in alphabet]
    # min_count=3 drops "lower" and "zap" from the merges, not from the alphabet.
    assert learn_wordpiece_vocab(counts.items(), 100, RESERVED, min_count=3) == (
        RESERVED
        + alphabet
        + ["##es", "##est", "##ew", "##ewest", "newest", "##ow", "low"]
        + ["##dest", "##idest", "widest"]
    )
    default = learn_wordpiece_vocab(counts.items(), 100, RESERVED)
    assert default[: len(RESERVED) + len(alphabet)] == RESERVED + alphabet
    assert "lower" in default and "zap" not in default and "##ap" not in default
    everything = learn_wordpiece_vocab(counts.items(), 100, RESERVED, min_count=1)
    assert everything[-2:] == ["##ap", "zap"]


def test_max_unique_chars_and_max_token_length():
    # Only e, w and s are kept; every word has another character, so nothing is merged.
    assert learn_wordpiece_vocab(COUNTS.items(), 100, RESERVED, max_unique_chars=3) == (
        RESERVED + ["e", "w", "s", "##e", "##w", "##s"]
    )
    # Words longer than max_token_length give characters only.
    vocab = learn_wordpiece_vocab(COUNTS.items(), 100, RESERVED, max_token_length=3)
    assert vocab == RESERVED + ALPHABET + ["##ow", "low"]


def test_custom_joiner_and_reserved_duplicates():
    vocab = learn_wordpiece_vocab({"ab": 3}.items(), 10, ["[PAD]", "a"], joiner="@@")
    assert vocab == ["[PAD]", "a", "b", "@@a", "@@b", "ab"]


def test_too_small_vocab_size_raises():
    with pytest.raises(ValueError, match="vocab_size=21"):
        learn_wordpiece_vocab(COUNTS.items(), 21, RESERVED)


def _naive_pieces(counts, budget):
    """The same merges recomputed from scratch at every step (slow, obviously right)."""
    words = {w: [w[0]] + ["##" + c for c in w[1:]] for w in counts if not w.startswith("##")}
    learned = []
    while True:
        pairs = {}
        for word, pieces in words.items():
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] = pairs.get(pair, 0) + counts[word]
        if not pairs:
            break
        left, right = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = left + right[2:]
        new_words = {}
        for word, pieces in words.items():
            out, i = [], 0
            while i < len(pieces):
                if pieces[i : i + 2] == [left, right]:
                    out.append(merged)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            new_words[word] = out
        in_use = {p for pieces in new_words.values() for p in pieces}
        if len(in_use & set(learned + [merged])) > budget:
            break
        words = new_words
        if merged not in learned:
            learned.append(merged)
    in_use = {p for pieces in words.values() for p in pieces}
    spare = budget - len(in_use & set(learned))
    chosen = []
    for piece in learned:
        if piece in in_use or spare > 0:
            spare -= piece not in in_use
            chosen.append(piece)
    return chosen


@pytest.mark.parametrize("seed", range(8))
def test_incremental_counts_match_naive_recount(seed):
    # Few letters and repeats: many ties, overlapping pairs ("aaa") and re-formed pairs.
    rng = random.Random(seed)
    counts = {}
    for _ in range(40):
        word = "".join(rng.choice("aab#c") for _ in range(rng.randint(1, 8)))
        counts[word] = rng.randint(1, 9)
    n_base = len(RESERVED) + 2 * len(set("".join(counts)))
    for budget in (0, 3, 10, 25, 1000):
        vocab = learn_wordpiece_vocab(counts.items(), n_base + budget, RESERVED, min_count=1)
        assert vocab[n_base:] == _naive_pieces(counts, budget), budget
