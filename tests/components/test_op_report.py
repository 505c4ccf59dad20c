"""The op report: core ops pass, allowlisted TF-Text ops pass, anything else is flagged."""

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow.core.protobuf import saved_model_pb2

from components.op_report import op_report
from models.tokenizer import TranslationTokenizer, learn_vocab


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


class _TranslatesBack(tf.Module):
    """A SentencePiece side's tokenize and detokenize, as the export uses them."""

    def __init__(self, side):
        super().__init__()
        self.side = side

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        return self.side.detokenize(self.side.tokenize(text))


def test_sentencepiece_export_is_servable(tmp_path):
    model = learn_vocab("sentencepiece_unigram", [("ab", 3), ("abc", 2)], 12, min_count=1)
    path = _save(_TranslatesBack(TranslationTokenizer(model, model).source), tmp_path / "m")
    report = op_report(path)
    # Detokenization is core ops: no SentencepieceDetokenizeOp.
    assert report["tf_text_ops"] == ["NormalizeUTF8", "SentencepieceOp", "SentencepieceTokenizeOp"]
    assert report["unsupported_ops"] == []
    # Attributes at their defaults are left out of the SavedModel, so a model server's older
    # op definitions (TF-Text 2.12) see only attributes they have ("_" ones are TensorFlow's).
    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    attrs = {
        node.op: {name for name in node.attr if not name.startswith("_")}
        for function in proto.meta_graphs[0].graph_def.library.function
        for node in function.node_def
        if node.op.startswith("Sentencepiece")
    }
    assert attrs == {"SentencepieceOp": {"model"}, "SentencepieceTokenizeOp": set()}
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert serve(text=tf.constant(["abc ab"]))["output_0"].numpy().tolist() == [b"abc ab"]
