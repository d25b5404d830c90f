"""experiments/digits.py: an MLP on scikit-learn's digits, Adam with the hand-written gradients."""

import digits
import numpy as np


def test_digits_quick(run_quick):
    result = run_quick(digits)
    m = result["metrics"]
    assert set(result["figures"]) == {"loss_curves", "confusion_matrix"}
    assert m["accuracy"]["test"] >= 0.92
    # the hand-written and autodiff gradients train identically (same shuffles, same Adam updates)
    assert m["check_epochs"] >= 2 and m["history_vs_autodiff_max_rel"] <= 1e-10
    M = np.array(m["confusion_test"])
    assert M.shape == (10, 10) and M.sum() == m["sizes"]["test"]
    assert np.isclose(np.trace(M) / M.sum(), m["accuracy"]["test"])
    assert sum(m["sizes"].values()) == 1797


def test_confusion_counts():
    M = digits.confusion(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), classes=3)
    np.testing.assert_array_equal(M, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_split_is_standardised_by_the_training_set():
    data = digits.load(seed=0)
    x_train = data.train[0]
    assert x_train.dtype == np.float64 and x_train.shape[1] == 64
    assert np.allclose(x_train.mean(axis=0), 0.0, atol=1e-12)
    assert not np.allclose(data.test[0].mean(axis=0), 0.0, atol=1e-12)  # scaled by the train statistics only
