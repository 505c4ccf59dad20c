"""Which ops a SavedModel needs, and whether a stock TF Serving binary has them.

TF Serving links core TensorFlow and its own copy of the TF-Text op library: TensorFlow Text
2.12.1 in current TF Serving releases (tensorflow/serving pull request #4057, 2025, proposes
moving it to 2.18.1). A SavedModel that needs a TF-Text op that copy lacks fails to load there
with "Op type not registered". The allowlist below is deliberately narrower than 2.12.1: the
tokenizer and normalizer kernels TF-Text already had in its 2.4 release, which every TF
Serving build since has carried.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

# The exports use NormalizeUTF8 with RegexSplitWithOffsets and WordpieceTokenizeWithOffsets
# (WordPiece) or with SentencepieceOp and SentencepieceTokenizeOp (SentencePiece). Of those
# two only SentencepieceOp's `model` attribute is in the SavedModel (attributes at their
# defaults are left out), so older op definitions load them.
TF_TEXT_SERVING_OPS = frozenset(
    {
        "CaseFoldUTF8",
        "NormalizeUTF8",
        "NormalizeUTF8WithOffsetsMap",
        "RegexSplitWithOffsets",
        "WordpieceTokenizeWithOffsets",
        "WhitespaceTokenizeWithOffsets",
        "UnicodeScriptTokenizeWithOffsets",
        "SentencepieceOp",
        "SentencepieceTokenizeOp",
        "SentencepieceDetokenizeOp",
        "SplitMergeTokenizeWithOffsets",
    }
)
TF_TEXT_OPS_SOURCE = (
    "tokenizer/normalizer ops of tensorflow-text 2.4; TF Serving embeds tensorflow-text 2.12.1"
)


def saved_model_ops(path: Path) -> Counter:
    """Op type -> number of nodes, over the graph and every function in its library."""
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    counts: Counter = Counter()
    for meta_graph in proto.meta_graphs:
        counts.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            counts.update(node.op for node in function.node_def)
    return counts


def core_ops() -> frozenset[str]:
    """Ops of core TensorFlow (tensorflow-text's ops are not among `tf.raw_ops`)."""
    return frozenset(name for name in dir(tf.raw_ops) if not name.startswith("_"))


def op_report(path: Path) -> dict:
    """Every op with its count, split into core, TF-Text (served) and not servable."""
    counts = saved_model_ops(path)
    core = core_ops()
    text_ops = sorted(op for op in counts if op not in core and op in TF_TEXT_SERVING_OPS)
    unsupported = sorted(op for op in counts if op not in core and op not in TF_TEXT_SERVING_OPS)
    return {
        "ops": dict(sorted(counts.items())),
        "tf_text_ops": text_ops,
        "tf_text_ops_source": TF_TEXT_OPS_SOURCE,
        "unsupported_ops": unsupported,
    }
