"""Greedy decoding in the graph equals a step-by-step arg-max loop in Python."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from models.decoding import END_ID, START_ID, greedy_decode
from models.transformer import Transformer


def _reference_greedy(model, source, max_length):
    tokens = [[START_ID] for _ in range(len(source))]
    done = [False] * len(source)
    while len(tokens[0]) < max_length and not all(done):
        logits = ops.convert_to_numpy(model({"source": source, "target_in": np.array(tokens)}))
        for i, row in enumerate(logits[:, -1, :]):
            token = 0 if done[i] else int(np.argmax(row))
            tokens[i].append(token)
            done[i] = done[i] or token == END_ID
    return tokens


def test_greedy_matches_python_loop():
    keras.utils.set_random_seed(3)
    model = Transformer(
        20, 20, num_layers=1, d_model=16, num_heads=2, dff=32, dropout=0.0, max_length=16
    )
    model.build()
    source = np.array([[2, 5, 6, 3], [2, 7, 3, 0], [2, 8, 9, 3]], dtype="int64")
    ids = greedy_decode(model, tf.constant(source), tf.constant(10)).numpy().tolist()
    assert ids == _reference_greedy(model, source, 10)
    assert all(row[0] == START_ID for row in ids) and len(ids[0]) <= 10


def test_empty_batch_decodes_to_nothing():
    model = Transformer(20, 20, num_layers=1, d_model=8, num_heads=2, dff=16, max_length=8)
    model.build()
    ids = greedy_decode(model, tf.zeros([0, 4], tf.int64), tf.constant(8))
    assert ids.shape[0] == 0
