"""Training callbacks' pure parts: the attention heatmap image."""

import numpy as np

from components.train_callbacks import heatmap


def test_heatmap_shape_and_colour_scale():
    weights = np.array([[0.0, 1.0], [0.5, 0.25]])
    image = heatmap(weights, cell=3)
    assert image.shape == (6, 6, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [20, 30, 90]  # 0: the dark end
    assert image[0, 3].tolist() == [250, 230, 40]  # the maximum: the bright end
    assert image[3, 0].tolist() == [135, 130, 65]  # half way
    assert (image[:3, :3] == image[0, 0]).all()  # each weight fills its cell
