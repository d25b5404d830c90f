"""The offline data sets: shapes, dtypes, targets, determinism by seed, splitting and scaling."""

import itertools

import numpy as np
import pytest

from fbackprop import data

# --- Shapes and dtypes ---------------------------------------------------------------------------

SETS = [  # (maker, x shape, y shape, labels are integers)
    (lambda dt: data.xor(dtype=dt), (4, 2), (4, 1), False),
    (lambda dt: data.parity(5, dtype=dt), (32, 5), (32, 1), False),
    (lambda dt: data.parity(3, coding="bipolar", dtype=dt), (8, 3), (8, 1), False),
    (lambda dt: data.two_spirals(dtype=dt), (194, 2), (194, 1), False),
    (lambda dt: data.two_spirals(50, noise=0.1, dtype=dt), (100, 2), (100, 1), False),
    (lambda dt: data.sine(dtype=dt), (200, 1), (200, 1), False),
    (lambda dt: data.sine(17, noise=0.1, dtype=dt), (17, 1), (17, 1), False),
    (lambda dt: data.peaks(dtype=dt), (900, 2), (900, 1), False),
    (lambda dt: data.two_moons(dtype=dt), (200, 2), (200,), True),
    (lambda dt: data.two_moons(51, dtype=dt), (51, 2), (51,), True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make, x_shape, y_shape, labels", SETS)
def test_shapes_and_dtypes(make, x_shape, y_shape, labels, dtype):
    x, y = make(dtype)
    assert x.shape == x_shape and x.dtype == dtype
    assert y.shape == y_shape
    assert np.issubdtype(y.dtype, np.integer) if labels else y.dtype == dtype
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))


def test_default_dtype_is_float32():
    for x, _ in [data.xor(), data.parity(2), data.two_spirals(), data.sine(), data.peaks(), data.two_moons()]:
        assert x.dtype == np.float32


# --- Boolean problems ----------------------------------------------------------------------------


def test_xor_targets():
    x, y = data.xor()
    assert {tuple(row) for row in x.tolist()} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    np.testing.assert_array_equal(y[:, 0], [int(a) ^ int(b) for a, b in x])


@pytest.mark.parametrize("n", range(2, 9))
def test_parity_binary_targets(n):
    x, y = data.parity(n)
    assert x.shape == (2**n, n) and y.shape == (2**n, 1)
    assert set(itertools.product([0, 1], repeat=n)) == {tuple(int(v) for v in row) for row in x}
    for row, target in zip(x, y[:, 0]):
        assert target == sum(int(v) for v in row) % 2


@pytest.mark.parametrize("n", range(2, 9))
def test_parity_bipolar_targets(n):
    x, y = data.parity(n, coding="bipolar")
    assert set(itertools.product([-1, 1], repeat=n)) == {tuple(int(v) for v in row) for row in x}
    for row, target in zip(x, y[:, 0]):
        ones = sum(1 for v in row if v == 1)
        assert target == (1 if ones % 2 else -1)


@pytest.mark.parametrize("n", [0, 1, 9, 12])
def test_parity_rejects_n_out_of_range(n):
    with pytest.raises(ValueError, match=r"parity: n must be an integer from 2 to 8; got "):
        data.parity(n)


def test_parity_rejects_unknown_coding():
    with pytest.raises(ValueError, match=r"binary.*bipolar"):
        data.parity(3, coding="ternary")


# --- Synthetic problems: content and determinism -------------------------------------------------


def test_two_spirals_classic_set():
    x, y = data.two_spirals(dtype=np.float64)
    assert set(np.unique(y)) == {0.0, 1.0} and y.sum() == 97
    one, zero = x[y[:, 0] == 1], x[y[:, 0] == 0]
    np.testing.assert_allclose(zero, -one)  # the second spiral is the first turned by pi
    np.testing.assert_allclose(one[0], [0.0, 6.5])  # i = 0: radius 6.5, angle 0
    np.testing.assert_allclose(np.hypot(*one.T), 6.5 * (104 - np.arange(97)) / 104)


def test_sine_values():
    x, y = data.sine(dtype=np.float64)
    np.testing.assert_allclose(x[[0, -1], 0], [-np.pi, np.pi])
    np.testing.assert_allclose(np.diff(x[:, 0]), 2 * np.pi / 199)
    np.testing.assert_allclose(y, np.sin(x))


def test_two_moons_labels_and_geometry():
    x, labels = data.two_moons(201, noise=0.0, dtype=np.float64)
    assert set(np.unique(labels)) == {0, 1} and np.sum(labels == 0) == 100 and np.sum(labels == 1) == 101
    upper, lower = x[labels == 0], x[labels == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: data.two_spirals(noise=0.2, seed=seed),
        lambda seed: data.two_moons(seed=seed),
        lambda seed: data.sine(noise=0.1, seed=seed),
    ],
    ids=["two_spirals", "two_moons", "sine"],
)
def test_random_sets_are_deterministic_by_seed(make):
    x0, y0 = make(0)
    x0_again, y0_again = make(0)
    x1, y1 = make(1)
    np.testing.assert_array_equal(x0, x0_again)
    np.testing.assert_array_equal(y0, y0_again)
    assert not (np.array_equal(x0, x1) and np.array_equal(y0, y1))


def test_peaks_centre_and_formula():
    x, z = data.peaks(31, dtype=np.float64)
    centre = 15 * 31 + 15
    np.testing.assert_allclose(x[centre], [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(z[centre, 0], 8 / 3 * np.exp(-1))  # the formula at (0, 0)
    np.testing.assert_allclose(z[centre, 0], 0.98101, atol=1e-5)
    np.testing.assert_allclose(data.peaks_function(0.0, 0.0), 0.98101, atol=1e-5)
    np.testing.assert_allclose(z, data.peaks_function(x[:, :1], x[:, 1:]))
    np.testing.assert_allclose(x.min(axis=0), [-3, -3])
    np.testing.assert_allclose(x.max(axis=0), [3, 3])
    assert len({tuple(row) for row in x.tolist()}) == 31 * 31


# --- scikit-learn's shipped sets -----------------------------------------------------------------


def test_digits():
    pytest.importorskip("sklearn")
    x, labels = data.digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert labels.shape == (1797,) and np.issubdtype(labels.dtype, np.integer)
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))


def test_breast_cancer():
    pytest.importorskip("sklearn")
    x, labels = data.breast_cancer(dtype=np.float64)
    assert x.shape == (569, 30) and x.dtype == np.float64
    assert labels.shape == (569,) and np.issubdtype(labels.dtype, np.integer)
    assert set(np.unique(labels)) == {0, 1}
    assert x.max() > 1.0  # raw, unscaled features


def test_sklearn_sets_explain_missing_sklearn(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError, match=r"digits\(\) needs scikit-learn: pip install 'fbackprop\[data\]'"):
        data.digits()
    with pytest.raises(ImportError, match=r"breast_cancer\(\) needs scikit-learn"):
        data.breast_cancer()


# --- split ---------------------------------------------------------------------------------------


def _ids(part):
    return part[0][:, 0].astype(int).tolist()


@pytest.mark.parametrize("n", [10, 97, 100])
def test_split_partitions(n):
    x = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float64)
    y = np.arange(n) * 10
    parts = data.split(x, y, seed=3)
    assert isinstance(parts, data.Split)
    sizes = [len(p[0]) for p in parts]
    assert sum(sizes) == n
    np.testing.assert_allclose(sizes, [0.6 * n, 0.2 * n, 0.2 * n], atol=1)
    ids = [_ids(p) for p in parts]
    assert sorted(itertools.chain(*ids)) == list(range(n))  # disjoint, and the union is everything
    for px, py in parts:  # x and y stay paired
        np.testing.assert_array_equal(py, px[:, 0] * 10)
        np.testing.assert_array_equal(px[:, 1], -px[:, 0])
    assert ids[0] != sorted(ids[0])  # shuffled


def test_split_is_deterministic_by_seed():
    x, y = np.arange(50.0)[:, None], np.arange(50)
    a, b, c = data.split(x, y, seed=0), data.split(x, y, seed=0), data.split(x, y, seed=1)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa[0], pb[0])
        np.testing.assert_array_equal(pa[1], pb[1])
    assert _ids(a.train) != _ids(c.train)


def test_split_custom_fractions():
    x, y = np.arange(20.0)[:, None], np.arange(20)
    train, val, test = data.split(x, y, fractions=(0.5, 0.25, 0.25))
    assert (len(train[0]), len(val[0]), len(test[0])) == (10, 5, 5)


@pytest.mark.parametrize("fractions", [(0.5, 0.3, 0.3), (0.6, 0.4, 0.0), (1.2, -0.1, -0.1), (0.5, 0.5)])
def test_split_rejects_bad_fractions(fractions):
    x, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(ValueError, match="fractions"):
        data.split(x, y, fractions=fractions)


# --- standardize ---------------------------------------------------------------------------------


def test_standardize_uses_train_statistics():
    rng = np.random.default_rng(0)
    x_train = rng.normal(3.0, 2.0, (100, 4))
    x_test = rng.normal(3.0, 2.0, (30, 4))
    mean, std, z_train, z_test = data.standardize(x_train, x_test)
    np.testing.assert_allclose(z_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z_train.std(axis=0), 1.0)
    np.testing.assert_allclose(mean, x_train.mean(axis=0))
    np.testing.assert_allclose(std, x_train.std(axis=0))
    np.testing.assert_allclose(z_test, (x_test - x_train.mean(axis=0)) / x_train.std(axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_constant_column(dtype):
    x_train = np.array([[1.0, 0.1], [2.0, 0.1], [3.0, 0.1]], dtype=dtype)
    x_other = np.array([[4.0, 0.1], [0.0, 0.5]], dtype=dtype)
    mean, std, z_train, z_other = data.standardize(x_train, x_other)
    assert std[1] == 1.0
    assert z_train.dtype == dtype
    assert np.all(np.isfinite(z_train)) and np.all(np.isfinite(z_other))
    np.testing.assert_array_equal(z_train[:, 1], 0.0)
    np.testing.assert_allclose(z_train[:, 0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-6)
    np.testing.assert_allclose(z_other[:, 1], [0.0, 0.4], rtol=1e-6)


def test_standardize_train_only():
    mean, std, z = data.standardize(np.array([[1.0], [3.0]]))
    np.testing.assert_allclose(z[:, 0], [-1.0, 1.0])


def test_sizes_and_seeds_accept_any_integer_type():
    import jax.numpy as jnp

    np.testing.assert_array_equal(data.parity(np.int64(3))[0], data.parity(3)[0])
    np.testing.assert_array_equal(
        data.sine(jnp.int32(7), 0.1, seed=np.uint8(2))[1], data.sine(7, 0.1, seed=2)[1]
    )
    assert data.two_moons(np.int16(10))[0].shape == (10, 2)
    assert data.peaks(np.int64(4))[0].shape == (16, 2)


def test_split_keeps_every_part_non_empty_at_the_smallest_size():
    x, y = np.arange(5.0)[:, None], np.arange(5)
    parts = data.split(x, y)
    assert [len(p[0]) for p in parts] == [3, 1, 1]
    with pytest.raises(ValueError, match="empty"):
        data.split(x[:2], y[:2])
