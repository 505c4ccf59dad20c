"""Strings in, strings out: the tokenizer, the model and decoding in one `tf.Module`.

Evaluation, the TensorBoard samples and the exported SavedModel all translate through this
class, so what is measured is what is served.
"""

from __future__ import annotations

import tensorflow as tf

from models.decoding import END_ID, PAD_ID, beam_search, cached_greedy_decode, greedy_decode
from models.tokenizer import TranslationTokenizer

TEXT = tf.TensorSpec([None], tf.string, name="text")


class Translator(tf.Module):
    """Translates a 1-D string tensor; each method returns {"translation", "score", "length"}.

    `translate` is cached greedy decoding (the default signature), `translate_beam` beam
    search, `translate_uncached` greedy decoding without a cache (the baseline it is checked
    against). `score` is the output's log-probability under the model, `length` the number of
    tokens it generated.

    Example:
        translator = Translator(tokenizer, model, max_extra_tokens=16, beam_size=4)
        translator.translate(tf.constant(["The dog runs."]))["translation"]
    """

    def __init__(
        self,
        tokenizer: TranslationTokenizer,
        model,
        max_extra_tokens: int = 16,
        beam_size: int = 4,
        length_penalty: float = 0.6,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model
        self.max_extra_tokens = max_extra_tokens
        self.beam_size = beam_size
        self.length_penalty = length_penalty

    def _source(self, text):
        limit = self.model.max_length
        source = self.tokenizer.source.tokenize(text)
        # Positions beyond the model's table cannot be embedded: an over-long input keeps its
        # first limit - 1 tokens and its end token, so the model still sees a closed sentence,
        # as every training pair is.
        cut = source.row_lengths() > limit
        source = source.to_tensor(default_value=PAD_ID)[:, :limit]
        last = tf.equal(tf.range(tf.shape(source)[1]), limit - 1)
        source = tf.where(
            tf.logical_and(cut[:, None], last[None, :]), tf.constant(END_ID, source.dtype), source
        )
        lengths = tf.reduce_sum(tf.cast(source != PAD_ID, tf.int32), axis=1)
        # Each sentence may grow to its own length plus a margin, whatever its batch holds.
        limits = tf.minimum(lengths + self.max_extra_tokens, limit)
        return source, tf.reduce_max(tf.concat([limits, [1]], 0)), limits

    def _output(self, ids, scores):
        # Generated tokens per sentence, the end token included (the start token is not).
        length = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1) - 1
        return {
            "translation": self.tokenizer.target.detokenize(ids),
            "score": scores,
            "length": length,
        }

    @tf.function(input_signature=[TEXT])
    def translate(self, text):
        """Cached greedy decoding."""
        source, max_length, limits = self._source(text)
        return self._output(*cached_greedy_decode(self.model, source, max_length, limits))

    @tf.function(input_signature=[TEXT])
    def translate_beam(self, text):
        """Beam search with `beam_size` beams and the GNMT length penalty."""
        source, max_length, limits = self._source(text)
        ids, scores = beam_search(
            self.model, source, max_length, self.beam_size, self.length_penalty, limits
        )
        return self._output(ids, scores)

    @tf.function(input_signature=[TEXT])
    def translate_uncached(self, text):
        """Greedy decoding that reruns the decoder over the prefix at each step."""
        source, max_length, limits = self._source(text)
        return self._output(*greedy_decode(self.model, source, max_length, limits))

    @tf.function(input_signature=[TEXT])
    def tokenize(self, text):
        """Source token ids as the model sees them, padded, with each row's length."""
        source, _, _ = self._source(text)
        lengths = tf.reduce_sum(tf.cast(source != PAD_ID, tf.int64), axis=1)
        return {"token_ids": source, "lengths": lengths}
