"""NormTrackingAdam records the global norm of exactly the gradients it applies."""

import keras
import numpy as np
import tensorflow as tf

from models.optimizers import NormTrackingAdam, global_norm


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,), dtype="int32")
    x = keras.layers.Embedding(5, 4)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_gradient_norm_is_the_global_norm_of_the_step_gradients():
    # Token 1 appears twice: its embedding gradient arrives as IndexedSlices with a repeated
    # index, which must be summed before squaring.
    x = np.array([[1, 1, 2], [3, 1, 0]], dtype="int32")
    y = np.array([[0.5, -1.0], [2.0, 0.0]], dtype="float32")
    model = _model()
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x))
    grads = tape.gradient(loss, model.trainable_variables)
    assert isinstance(grads[0], tf.IndexedSlices)
    dense = [tf.convert_to_tensor(g) for g in grads]
    expected = float(np.sqrt(sum(np.sum(np.square(g.numpy())) for g in dense)))

    optimizer = NormTrackingAdam(1e-3)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    assert abs(float(optimizer.gradient_norm.numpy()) - expected) < 1e-6 * expected
    assert float(optimizer.iterations.numpy()) == 1


def test_global_norm_of_known_values():
    assert float(global_norm([np.array([3.0, 0.0]), None, np.array([[4.0]])])) == 5.0
    assert float(global_norm([])) == 0.0


def test_fit_updates_the_norm_and_the_model_saves_and_loads(tmp_path):
    model = _model()
    model.compile(optimizer=NormTrackingAdam(1e-2), loss="mse")
    x = np.array([[1, 2, 3]] * 4, dtype="int32")
    model.fit(x, np.ones((4, 2), "float32"), epochs=1, verbose=0)
    assert float(model.optimizer.gradient_norm.numpy()) > 0.0
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, NormTrackingAdam)
