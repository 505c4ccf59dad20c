"""The op report: core ops pass, allowlisted TF-Text ops pass, anything else is flagged."""

import tensorflow as tf
import tensorflow_text as tf_text

from components.op_report import op_report


class _Tokenizes(tf.Module):
    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        return self.tokenizer.tokenize(text).flat_values


def _save(module, path):
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


VOCAB = ["[UNK]", "a", "b", "##b"]


def test_wordpiece_export_is_servable(tmp_path):
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(VOCAB, tf.range(4, dtype=tf.int64)), 1
    )
    module = _Tokenizes(tf_text.BertTokenizer(table, token_out_type=tf.int64))
    report = op_report(_save(module, tmp_path / "m"))
    assert report["tf_text_ops"] == ["RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"]
    assert report["unsupported_ops"] == []
    assert report["ops"]["WordpieceTokenizeWithOffsets"] >= 1


def test_newer_tf_text_op_is_flagged(tmp_path):
    module = _Tokenizes(tf_text.FastWordpieceTokenizer(VOCAB, token_out_type=tf.int64))
    report = op_report(_save(module, tmp_path / "m"))
    assert report["unsupported_ops"] == ["FastWordpieceTokenizeWithOffsets"]
