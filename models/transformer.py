"""Encoder-decoder Transformer (Vaswani et al., 2017) for translation, as a Keras model."""

from __future__ import annotations

import keras
from keras import ops

from models.dropout import Dropout
from models.layer_norm import LayerNormalization
from models.losses import MaskedCrossEntropy, projected_cross_entropy
from models.positional_embedding import PositionalEmbedding
from models.projection import OutputProjection, affine
from models.transformer_layers import TransformerDecoderBlock, TransformerEncoderBlock

PAD_ID = 0


def padding_mask(token_ids):
    """(batch, 1, time) boolean: True at real tokens, so every query ignores padded keys."""
    return ops.expand_dims(ops.not_equal(token_ids, PAD_ID), 1)


def segment_mask(query_segments, key_segments):
    """(batch, Tq, Tk) boolean for packed rows: a query sees the keys of its own pair only.

    Segments number the pairs of a row from 1; 0 marks padding, which no query sees.
    """
    same = ops.equal(ops.expand_dims(query_segments, 2), ops.expand_dims(key_segments, 1))
    return ops.logical_and(same, ops.expand_dims(ops.not_equal(key_segments, 0), 1))


def causal_mask(length):
    """(1, time, time) boolean: query t may attend to keys 0..t only."""
    rows = ops.expand_dims(ops.arange(length), 1)
    cols = ops.expand_dims(ops.arange(length), 0)
    return ops.expand_dims(rows >= cols, 0)


class TiedOutputProjection(keras.layers.Layer):
    """Logits from the shared token embedding, transposed, plus a bias; float32 for the loss."""

    compiled = False  # models.compiled.use_compiled_paths: the written-out gradient of `affine`
    fold_bias = True

    def __init__(self, embedding: PositionalEmbedding, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.embedding = embedding

    def build(self, input_shape):
        self.bias = self.add_weight(
            shape=(self.embedding.vocab_size,), initializer="zeros", name="bias"
        )

    def call(self, x, training=None):
        matrix = self.embedding.token_embedding.embeddings
        x = ops.cast(x, matrix.dtype)
        bias = ops.cast(self.bias, matrix.dtype)
        if self.compiled and training:
            logits = affine(x, matrix, bias, transposed=True, fold_bias=self.fold_bias)
        else:
            logits = ops.add(ops.matmul(x, ops.transpose(matrix)), bias)
        return ops.cast(logits, "float32")

    def projection(self):
        """(matrix (d, vocab), bias): the logits are x @ matrix + bias."""
        return ops.transpose(self.embedding.token_embedding.embeddings), self.bias


@keras.saving.register_keras_serializable(package="translation")
class Transformer(keras.Model):
    """Maps {"source": (batch, S) ids, "target_in": (batch, T) ids} to (batch, T, vocab) logits.

    `target_in` starts with the start token; the logits at position t predict target token t+1.
    `encode` and `decode` are exposed separately for step-by-step decoding.

    With `fused_loss` set (XLA steps, `models.compiled.use_compiled_paths`), training steps
    compute the vocabulary projection and the loss together (`projected_cross_entropy`), a
    block of positions at a time, instead of the logits and then the loss: the same loss,
    gradients and metrics, without the full logits tensor.

    Example:
        model = Transformer(source_vocab_size=100, target_vocab_size=120, num_layers=1,
                            d_model=16, num_heads=2, dff=32, max_length=32)
        logits = model({"source": src, "target_in": tgt_in})
    """

    def __init__(
        self,
        source_vocab_size,
        target_vocab_size,
        num_layers=2,
        d_model=128,
        num_heads=4,
        dff=512,
        dropout=0.1,
        max_length=64,
        positional="sinusoidal",
        norm_first=True,
        share_embeddings=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.fused_loss = False
        if share_embeddings and source_vocab_size != target_vocab_size:
            raise ValueError(
                "share_embeddings needs one vocabulary for both sides "
                f"(got {source_vocab_size} and {target_vocab_size} tokens)"
            )
        self.source_vocab_size = source_vocab_size
        self.target_vocab_size = target_vocab_size
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.dropout = dropout
        self.max_length = max_length
        self.positional = positional
        self.norm_first = norm_first
        self.share_embeddings = share_embeddings
        block_args = dict(
            d_model=d_model, num_heads=num_heads, dff=dff, dropout=dropout, norm_first=norm_first
        )
        self.source_embedding = PositionalEmbedding(
            source_vocab_size, d_model, max_length, positional, name="source_embedding"
        )
        # Shared: one matrix embeds both sides and, transposed, projects to the vocabulary
        # (Vaswani et al. 2017, section 3.4), as the base and big presets do.
        self.target_embedding = (
            self.source_embedding
            if share_embeddings
            else PositionalEmbedding(
                target_vocab_size, d_model, max_length, positional, name="target_embedding"
            )
        )
        self.embedding_dropout = Dropout(dropout)
        self.encoder_blocks = [
            TransformerEncoderBlock(**block_args, name=f"encoder_{i}") for i in range(num_layers)
        ]
        self.decoder_blocks = [
            TransformerDecoderBlock(**block_args, name=f"decoder_{i}") for i in range(num_layers)
        ]
        # Pre-norm blocks leave their output un-normalized; a final norm per stack fixes that.
        self.encoder_norm = LayerNormalization(epsilon=1e-6, name="encoder_norm")
        self.decoder_norm = LayerNormalization(epsilon=1e-6, name="decoder_norm")
        self.output_projection = (
            TiedOutputProjection(self.source_embedding, name="logits")
            if share_embeddings
            else OutputProjection(target_vocab_size, name="logits", dtype="float32")
        )

    def build(self, input_shape=None):
        # One forward pass on a tiny batch creates every weight, so a loaded model can be built
        # before its weights are restored.
        dummy = ops.convert_to_tensor([[2, 3]], dtype="int64")
        self.call({"source": dummy, "target_in": dummy})
        self.built = True

    def encode(self, source, training=None, packing=None):
        """(batch, S) ids -> (batch, S, d_model) memory.

        For packed rows, `packing` holds the (batch, S) source_segments and source_positions:
        which pair each token is of and where in it. Attention stays within a pair and
        positions restart with each pair.
        """
        positions = None
        if packing is None:
            mask = padding_mask(source)
        else:
            segments, positions = packing["source_segments"], packing["source_positions"]
            mask = segment_mask(segments, segments)
        x = self.source_embedding(source, positions=positions)
        x = self.embedding_dropout(x, training=training)
        for block in self.encoder_blocks:
            x = block(x, attention_mask=mask, training=training)
        return self.encoder_norm(x) if self.norm_first else x

    def decode(
        self,
        target_in,
        memory,
        source,
        training=None,
        return_attention=False,
        packing=None,
        features_only=False,
    ):
        """(batch, T) ids and encoder memory -> (batch, T, vocab) logits.

        With `return_attention`, also each layer's cross-attention weights (batch, heads, T, S).
        With `features_only`, the (batch, T, d_model) features the logits are projected from.
        For packed rows, `packing` holds the (batch, T) target_segments and target_positions and
        the (batch, S) source_segments.
        """
        length = ops.shape(target_in)[1]
        positions = None
        if packing is None:
            self_mask = ops.logical_and(causal_mask(length), padding_mask(target_in))
            cross_mask = padding_mask(source)
        else:
            segments = packing["target_segments"]
            self_mask = ops.logical_and(causal_mask(length), segment_mask(segments, segments))
            cross_mask = segment_mask(segments, packing["source_segments"])
            positions = packing["target_positions"]
        x = self.target_embedding(target_in, positions=positions)
        x = self.embedding_dropout(x, training=training)
        attention = []
        for block in self.decoder_blocks:
            x = block(
                x,
                memory,
                self_mask=self_mask,
                cross_mask=cross_mask,
                training=training,
                return_attention=return_attention,
            )
            if return_attention:
                x, weights = x
                attention.append(weights)
        if self.norm_first:
            x = self.decoder_norm(x)
        logits = x if features_only else self.output_projection(x)
        return (logits, attention) if return_attention else logits

    def start_decoding(self, source, max_length):
        """Encoder outputs projected for cross-attention, and empty self-attention caches."""
        memory = self.encode(source, training=False)
        cross = [block.cross_key_value(memory) for block in self.decoder_blocks]
        head_dim = self.d_model // self.num_heads
        shape = (ops.shape(source)[0], max_length, self.num_heads, head_dim)
        caches = [(ops.zeros(shape, memory.dtype), ops.zeros(shape, memory.dtype)) for _ in cross]
        return cross, caches

    def decode_step(self, token, index, caches, cross, source):
        """Logits (batch, vocab) for the token after `token` (batch,) at position `index`."""
        x = self.target_embedding(ops.expand_dims(token, 1), start=index)
        cross_mask = padding_mask(source)
        new_caches = []
        for block, cache, key_value in zip(self.decoder_blocks, caches, cross):
            x, cache = block.step(x, cache, index, key_value, cross_mask)
            new_caches.append(cache)
        if self.norm_first:
            x = self.decoder_norm(x)
        return self.output_projection(x)[:, 0, :], new_caches

    def call(self, inputs, training=None, features_only=False):
        source, target_in = inputs["source"], inputs["target_in"]
        # Packed rows (components.input_pipeline, train.pack_length) carry segment and position
        # ids beside the tokens: several pairs per row.
        packing = inputs if "source_segments" in inputs else None
        memory = self.encode(source, training=training, packing=packing)
        return self.decode(
            target_in,
            memory,
            source,
            training=training,
            packing=packing,
            features_only=features_only,
        )

    def projection_weights(self):
        """(matrix (d_model, vocab), bias (vocab,)) of the vocabulary projection."""
        return self.output_projection.projection()

    def _can_fuse_loss(self, y, sample_weight) -> bool:
        """Whether this step's loss and metrics are all the fused step computes."""
        metrics = self._compile_metrics
        return (
            self.fused_loss
            and keras.backend.backend() == "tensorflow"
            and sample_weight is None
            and not isinstance(y, (dict, list, tuple))
            and type(self.loss) is MaskedCrossEntropy
            and not self.losses
            and metrics is not None
            and metrics.built
            and not any(metrics._flat_weighted_metrics)
            and all(hasattr(metric, "update_from_stats") for metric in metrics.metrics)
        )

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not self._can_fuse_loss(y, sample_weight):
            return super().train_step(data)
        import tensorflow as tf

        with tf.GradientTape() as tape:
            features = self(x, training=True, features_only=True)
            matrix, bias = self.projection_weights()
            loss, stats = projected_cross_entropy(
                features, matrix, bias, y, self.loss.label_smoothing
            )
            # As Keras' step: the tracker gets this replica's mean, the gradient is of the mean
            # over replicas (each adds its share), times the optimizer's loss scale.
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(y)[0])
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = self.optimizer.scale_loss(loss / replicas if replicas > 1 else loss)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        for metric in self._compile_metrics.metrics:
            metric.update_from_stats(y, stats)
        return self.get_metrics_result()

    def get_config(self):
        config = super().get_config()
        config.update(
            source_vocab_size=self.source_vocab_size,
            target_vocab_size=self.target_vocab_size,
            num_layers=self.num_layers,
            d_model=self.d_model,
            num_heads=self.num_heads,
            dff=self.dff,
            dropout=self.dropout,
            max_length=self.max_length,
            positional=self.positional,
            norm_first=self.norm_first,
            share_embeddings=self.share_embeddings,
        )
        return config
