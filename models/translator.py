"""Strings in, strings out: the tokenizer, the model and decoding in one `tf.Module`.

Evaluation, the TensorBoard samples and the exported SavedModel all translate through this
class, so what is measured is what is served.
"""

from __future__ import annotations

import tensorflow as tf

from models.decoding import PAD_ID, greedy_decode
from models.tokenizer import TranslationTokenizer


class Translator(tf.Module):
    """Translates a 1-D string tensor with greedy decoding.

    Example:
        translator = Translator(tokenizer, model, max_extra_tokens=16)
        translator.translate(tf.constant(["The dog runs."]))["translation"]
    """

    def __init__(self, tokenizer: TranslationTokenizer, model, max_extra_tokens: int = 16):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model
        self.max_extra_tokens = max_extra_tokens

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def translate(self, text):
        """{"translation": [batch] strings} for a [batch] string tensor."""
        limit = self.model.max_length
        source = self.tokenizer.source.tokenize(text)
        # Positions beyond the model's table cannot be embedded: over-long inputs are cut.
        source = source.to_tensor(default_value=PAD_ID)[:, :limit]
        max_length = tf.minimum(tf.shape(source)[1] + self.max_extra_tokens, limit)
        ids = greedy_decode(self.model, source, max_length)
        return {"translation": self.tokenizer.target.detokenize(ids)}
