"""Model presets and shared embeddings: parameter counts as in Vaswani et al. (2017)."""

import keras
import numpy as np
import pytest
from keras import ops

from models.presets import PRESETS, preset_architecture
from models.transformer import Transformer


def _params(preset: str, vocab: int = 37000) -> int:
    model = Transformer(
        vocab, vocab, share_embeddings=True, max_length=256, **preset_architecture(preset)
    )
    model.build()
    return model.count_params()


@pytest.mark.parametrize("preset, paper", [("base", 65e6), ("big", 213e6)])
def test_paper_presets_match_the_paper_parameter_counts(preset, paper):
    # Table 3 of the paper, with a shared 37k source-target vocabulary and tied embeddings.
    assert abs(_params(preset) - paper) / paper < 0.05


def test_tutorial_preset_is_the_tensorflow_tutorial_model():
    assert PRESETS["tutorial"] == (4, 128, 8, 512)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_architecture("huge")


def test_shared_embeddings_tie_all_three_matrices(tmp_path):
    keras.utils.set_random_seed(0)
    tied = Transformer(
        50,
        50,
        num_layers=1,
        d_model=16,
        num_heads=2,
        dff=32,
        dropout=0.0,
        max_length=16,
        share_embeddings=True,
    )
    tied.build()
    untied = Transformer(50, 50, num_layers=1, d_model=16, num_heads=2, dff=32, max_length=16)
    untied.build()
    # Two embedding matrices and the output kernel (50 x 16 each) collapse into one.
    assert untied.count_params() - tied.count_params() == 2 * 50 * 16
    assert tied.target_embedding is tied.source_embedding
    inputs = {"source": np.array([[2, 7, 8, 3]]), "target_in": np.array([[2, 9, 0]])}
    path = tmp_path / "tied.keras"
    tied.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(tied(inputs)), ops.convert_to_numpy(loaded(inputs))
    )
    with pytest.raises(ValueError, match="one vocabulary"):
        Transformer(50, 60, share_embeddings=True)
