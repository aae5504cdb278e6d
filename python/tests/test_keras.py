"""A Keras model trained and saved in this test, predicted privately: the
README's notebook example. Needs TensorFlow (not installed in CI by default)."""

import numpy as np
import pytest

import tfe_run

try:
    import tensorflow as tf
except ImportError:
    tf = None


def frozen_graph(model, input_shape):
    """The model's frozen GraphDef, as bytes (docs/FORMATS.md)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    f = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec(input_shape, tf.float32))
    return convert_variables_to_constants_v2(f).graph.as_graph_def().SerializeToString()


@pytest.mark.skipif(tf is None, reason="SKIPPED: TensorFlow is not installed (pip install tensorflow-cpu)")
def test_a_keras_model_saved_from_python_predicts_privately_as_keras_does(tmp_path):
    rng = np.random.default_rng(17)
    x = rng.normal(size=(256, 8, 8, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64) + (x[:, 0, 0, 0] > 0)
    tf.keras.utils.set_random_seed(17)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)),
        tf.keras.layers.Conv2D(4, 3, activation="relu"),
        tf.keras.layers.AveragePooling2D(2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(3),
    ])
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    graph = frozen_graph(model, [None, 8, 8, 1])
    (tmp_path / "model.pb").write_bytes(graph)

    batch = x[:20]
    want = model.predict(batch, verbose=0)
    private = tfe_run.predict(graph, batch)
    from_file = tfe_run.predict(tmp_path / "model.pb", batch, plaintext=True)
    assert private.shape == want.shape == (20, 3)
    assert np.max(np.abs(private - want) / np.maximum(1, np.abs(want))) <= 1e-2
    np.testing.assert_allclose(from_file, want, rtol=1e-4, atol=1e-4)
    assert tfe_run.inspect(graph)["inputs"][0]["shape"] == [-1, 8, 8, 1]
