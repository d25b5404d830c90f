"""experiments/cnn_digits.py: a small CNN on scikit-learn's digits as images, Adam with the hand-written
gradients."""

import argparse

import cnn_digits
import digits
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_cnn_digits_quick(run_quick):
    result = run_quick(cnn_digits)
    m = result["metrics"]
    assert set(result["figures"]) == {"loss_curves", "filters"}
    assert m["accuracy"]["test"] >= 0.95
    # the hand-written and autodiff gradients train identically (same shuffles, same Adam updates)
    assert m["check_epochs"] >= 2 and m["history_vs_autodiff_max_rel"] <= 1e-10
    assert m["n_params"] == 6090 and m["channels"] == [16, 32]
    M = np.array(m["confusion_test"])
    assert M.shape == (10, 10) and M.sum() == m["sizes"]["test"]
    assert np.isclose(np.trace(M) / M.sum(), m["accuracy"]["test"])
    assert sum(m["sizes"].values()) == 1797


def test_images_are_the_mlp_split_on_one_scale():
    """The same examples in each part as digits.load, as (N, 8, 8, 1) images standardised by two scalars."""
    images, vectors = cnn_digits.load(seed=3), digits.load(seed=3)
    for (xi, yi), (_, yv) in zip(images, vectors):
        assert xi.shape[1:] == (8, 8, 1) and xi.dtype == np.float64
        np.testing.assert_array_equal(yi, yv)
    x_train = images.train[0]
    assert abs(x_train.mean()) < 1e-12 and abs(x_train.std() - 1) < 1e-12
    # one scale for every pixel: the per-pixel spread is not flattened to 1 as digits.load does
    assert x_train.reshape(len(x_train), -1).std(axis=0).min() < 0.1


def test_network_shapes():
    net = cnn_digits.network((4, 6))
    assert net.input_shape == (8, 8, 1) and net.output_shape == (10,)
    assert net.n_params == (4 * 9 + 4) + (6 * 9 * 4 + 6) + (2 * 2 * 6 * 10 + 10)


@pytest.mark.parametrize("text", ["16", "16,32,64", "a,b", "0,4", "-1,3"])
def test_channels_flag_refuses_bad_values(text):
    with pytest.raises(argparse.ArgumentTypeError, match="two positive integers"):
        cnn_digits.channels_arg(text)
