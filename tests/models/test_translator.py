"""The Translator module: what the exported signatures feed the model."""

import keras
import tensorflow as tf

from models.tokenizer import END_ID, RESERVED_TOKENS, START_ID, TranslationTokenizer
from models.transformer import Transformer
from models.translator import Translator

VOCAB = RESERVED_TOKENS + [".", "The", "dog", "runs", "cat"]


def _translator(max_length=8):
    keras.utils.set_random_seed(0)
    model = Transformer(
        len(VOCAB), len(VOCAB), num_layers=1, d_model=8, num_heads=2, dff=16,
        max_length=max_length,
    )  # fmt: skip
    model.build()
    return Translator(TranslationTokenizer(VOCAB, VOCAB), model, max_extra_tokens=4)


def test_over_long_source_keeps_its_end_token():
    translator = _translator(max_length=8)
    # [START] The dog runs The cat runs The dog runs . [END]: 12 ids, 8 fit.
    out = translator.tokenize(tf.constant(["The dog runs The cat runs The dog runs.", "The cat."]))
    assert out["token_ids"].numpy().tolist() == [
        [START_ID, 5, 6, 7, 5, 8, 7, END_ID],
        [START_ID, 5, 8, 4, END_ID, 0, 0, 0],
    ]
    assert out["lengths"].numpy().tolist() == [8, 5]


def test_source_that_fits_exactly_is_unchanged():
    translator = _translator(max_length=6)
    # [START] The dog runs . [END] is 6 ids and fits; one word more (7 ids) is cut.
    out = translator.tokenize(tf.constant(["The dog runs.", "The dog runs The."]))
    assert out["token_ids"].numpy().tolist() == [
        [START_ID, 5, 6, 7, 4, END_ID],
        [START_ID, 5, 6, 7, 5, END_ID],
    ]
    assert out["lengths"].numpy().tolist() == [6, 6]
