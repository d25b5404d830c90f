"""Small data sets, all in memory and offline.

Shapes: ``x: (N, n_in)``, ``y: (N, n_out)``, or class labels ``(N,)``.

Pure NumPy; every random set is a function of its ``seed`` (``np.random.default_rng(seed)``).
Sizes and seeds are integers (Python, NumPy or 0-d JAX integers; floats are refused), ``noise``
is a standard deviation (``>= 0``).
"""

from __future__ import annotations

import numpy as np

from .preprocess import Split, split, standardize  # noqa: F401  (fb.data.split, as before)
from .validate import as_float, as_int


def seed_example(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The 6-example, 3-input toy of the classic NumPy backpropagation tutorial.

    Args:
        dtype: the arrays' dtype (default float32).

    Returns:
        ``(x, y)``: ``x: (6, 3)`` of 0/1 inputs and targets ``(0 1 0 1 1 0)`` as a column ``(6, 1)``.

    Examples:
        >>> x, y = fb.data.seed_example()
        >>> x.shape, y.shape
        ((6, 3), (6, 1))
    """
    x = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=dtype)
    y = np.array([[0, 1, 0, 1, 1, 0]], dtype=dtype).T
    return x, y


def seed_example_params(dtype=np.float32, seed: int = 1) -> tuple[dict, dict]:
    """The initial weights of the classic NumPy tutorial's toy, drawn as its code draws them.

    The tutorial draws ``hidden_weights: (1 + 3, 3)`` and ``output_weights: (1 + 3, 1)`` uniform on
    [-1, 1] after ``np.random.seed(1)``, bias in row 0; here ``W = weights[1:].T`` and
    ``b = weights[0]``, fbackprop's layout for ``fb.mlp([3, 3, 1], activation="sigmoid")``.

    Args:
        dtype: the arrays' dtype (default float32).
        seed: the legacy NumPy seed (default 1, the tutorial's).

    Returns:
        ``({"W": (3, 3), "b": (3,)}, {"W": (1, 3), "b": (1,)})``.

    Examples:
        >>> hidden, output = fb.data.seed_example_params()   # for fb.mlp([3, 3, 1])
        >>> hidden["W"].shape, output["W"].shape, output["b"].shape
        ((3, 3), (1, 3), (1,))
    """
    seed = as_int(seed, "seed", minimum=0)
    rng = np.random.RandomState(seed)  # the legacy global generator's stream, without touching it
    hidden = 2 * rng.random_sample((4, 3)) - 1
    output = 2 * rng.random_sample((4, 1)) - 1
    layer = lambda w: {"W": w[1:].T.astype(dtype), "b": w[0].astype(dtype)}
    return layer(hidden), layer(output)


# --- Labels ------------------------------------------------------------------------------------

LABEL_DTYPE = np.int32  # integer class labels ``(N,)``; int32 so JAX keeps them without x64


def _labels(y) -> np.ndarray:
    return np.asarray(y).astype(LABEL_DTYPE).reshape(-1)


# --- Boolean problems --------------------------------------------------------------------------


def xor(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """XOR on the 4 points of ``{0, 1}^2``.

    Args:
        dtype: the arrays' dtype (default float32).

    Returns:
        ``(x, y)``: ``x: (4, 2)``, ``y: (4, 1)`` with 1 where the two inputs differ.

    Examples:
        >>> x, y = fb.data.xor()
        >>> x.shape, y.shape
        ((4, 2), (4, 1))
    """
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    return x, (x[:, :1] != x[:, 1:]).astype(dtype)


PARITY_CODINGS = ("binary", "bipolar")


def parity(n: int, coding: str = "binary", dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """All ``2^n`` patterns of n-bit parity, ``2 <= n <= 8``: ``x: (2^n, n)``, ``y: (2^n, 1)``.

    ``"binary"``: inputs and targets in ``{0, 1}``, target 1 for an odd number of ones;
    ``"bipolar"``: the same with 0 -> -1 and 1 -> +1. Rows count up in binary, most significant bit first.

    Args:
        n: the number of bits, an integer from 2 to 8.
        coding: ``"binary"`` (default) or ``"bipolar"``.
        dtype: the arrays' dtype (default float32).

    Returns:
        ``(x, y)``: ``x: (2^n, n)``, ``y: (2^n, 1)``.

    Examples:
        >>> x, y = fb.data.parity(3)
        >>> x.shape, y.shape
        ((8, 3), (8, 1))
    """
    n = as_int(n, "parity: n", minimum=2, maximum=8)
    if coding not in PARITY_CODINGS:
        raise ValueError(f"unknown coding {coding!r}; valid codings: {', '.join(PARITY_CODINGS)}")
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1  # (2^n, n)
    odd = bits.sum(axis=1, keepdims=True) % 2  # (2^n, 1)
    if coding == "bipolar":
        bits, odd = 2 * bits - 1, 2 * odd - 1
    return bits.astype(dtype), odd.astype(dtype)


# --- Synthetic two-dimensional and curve-fitting problems ---------------------------------------


def _noise_and_seed(noise, seed) -> tuple[float, int]:
    return as_float(noise, "noise", minimum=0.0), as_int(seed, "seed", minimum=0)


def two_spirals(
    n_points: int = 97, noise: float = 0.0, seed: int = 0, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Lang & Witbrock's (1988) two interleaved spirals, labels in ``{0, 1}``.

    Spiral 1 (label 1) is ``r (sin a, cos a)`` with ``a = i pi / 16``, ``r = 6.5 (104 - i) / 104``
    for ``i = 0 .. 96`` (``n_points`` evenly spaced values of ``i``; the classic set at 97); spiral 0 is
    its point reflection ``-x``. ``noise`` is the standard deviation of Gaussian noise on each coordinate.

    Args:
        n_points: points per spiral, a positive integer (default 97, the classic set).
        noise: standard deviation of the noise, ``>= 0`` (default 0).
        seed: the noise's random seed, an integer ``>= 0``.
        dtype: the arrays' dtype (default float32).

    Returns:
        ``(x, y)``: ``x: (2 n_points, 2)``, ``y: (2 n_points, 1)`` in ``{0, 1}``.

    Examples:
        >>> x, y = fb.data.two_spirals(4)
        >>> x.shape, y.shape
        ((8, 2), (8, 1))
    """
    n_points = as_int(n_points, "n_points")
    noise, seed = _noise_and_seed(noise, seed)
    i = np.linspace(0.0, 96.0, n_points)
    angle, radius = i * np.pi / 16, 6.5 * (104 - i) / 104
    one = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    x = np.concatenate([one, -one])
    if noise > 0:
        x = x + np.random.default_rng(seed).normal(0.0, noise, x.shape)
    y = np.concatenate([np.ones(n_points), np.zeros(n_points)])[:, None]
    return x.astype(dtype), y.astype(dtype)


def sine(n: int = 200, noise: float = 0.0, seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(x)`` on ``n`` evenly spaced points of ``[-pi, pi]``, plus Gaussian noise.

    Args:
        n: the number of points, a positive integer (default 200).
        noise: standard deviation of the noise on ``y``, ``>= 0`` (default 0).
        seed: the noise's random seed, an integer ``>= 0``.
        dtype: the arrays' dtype (default float32).

    Returns:
        ``(x, y)``: ``x: (n, 1)``, ``y: (n, 1)``.

    Examples:
        >>> x, y = fb.data.sine(8)
        >>> x.shape, y.shape
        ((8, 1), (8, 1))
    """
    n = as_int(n, "n")
    noise, seed = _noise_and_seed(noise, seed)
    x = np.linspace(-np.pi, np.pi, n)[:, None]
    y = np.sin(x)
    if noise > 0:
        y = y + np.random.default_rng(seed).normal(0.0, noise, y.shape)
    return x.astype(dtype), y.astype(dtype)


def peaks_function(x, y):
    """MATLAB's ``peaks`` surface at points ``(x, y)``.

    Args:
        x: first coordinates, any shape.
        y: second coordinates, broadcastable with ``x``.

    Returns:
        The surface's height, of the broadcast shape.

    Examples:
        >>> fb.data.peaks_function(np.zeros((2, 3)), 0.0).shape
        (2, 3)
    """
    return (
        3 * (1 - x) ** 2 * np.exp(-(x**2) - (y + 1) ** 2)
        - 10 * (x / 5 - x**3 - y**5) * np.exp(-(x**2) - y**2)
        - np.exp(-((x + 1) ** 2) - y**2) / 3
    )


def peaks(n: int = 30, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``peaks`` on an ``n x n`` grid over ``[-3, 3]^2``: ``x: (n n, 2)`` as ``(x, y)``.

    Row ``k`` is grid point ``(t[k % n], t[k // n])`` with ``t = linspace(-3, 3, n)``.

    Args:
        n: grid points per axis, a positive integer (default 30).
        dtype: the arrays' dtype (default float32).

    Returns:
        ``(x, y)``: ``x: (n n, 2)``, ``y: (n n, 1)``.

    Examples:
        >>> x, y = fb.data.peaks(3)
        >>> x.shape, y.shape
        ((9, 2), (9, 1))
    """
    n = as_int(n, "n")
    gx, gy = np.meshgrid(np.linspace(-3.0, 3.0, n), np.linspace(-3.0, 3.0, n))
    x = np.stack([gx.ravel(), gy.ravel()], axis=1)
    return x.astype(dtype), peaks_function(x[:, :1], x[:, 1:]).astype(dtype)


def two_moons(
    n: int = 200, noise: float = 0.1, seed: int = 0, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles, as scikit-learn's ``make_moons`` (shuffled), labels in ``{0, 1}``.

    ``n // 2`` points on the upper moon (label 0), the rest on the lower one (label 1);
    ``noise`` is the standard deviation of Gaussian noise on each coordinate.

    Args:
        n: the number of points, an integer ``>= 2`` (default 200).
        noise: standard deviation of the noise, ``>= 0`` (default 0.1).
        seed: the shuffle's and the noise's random seed, an integer ``>= 0``.
        dtype: ``x``'s dtype (default float32).

    Returns:
        ``(x, labels)``: ``x: (n, 2)``, integer labels ``(n,)``.

    Examples:
        >>> x, labels = fb.data.two_moons(8)
        >>> x.shape, labels.shape, sorted(set(labels.tolist()))
        ((8, 2), (8,), [0, 1])
    """
    n = as_int(n, "n", minimum=2)
    noise, seed = _noise_and_seed(noise, seed)
    n_out = n // 2
    n_in = n - n_out
    t_out, t_in = np.linspace(0.0, np.pi, n_out), np.linspace(0.0, np.pi, n_in)
    x = np.concatenate(
        [
            np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
            np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1),
        ]
    )
    labels = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    x, labels = x[order], labels[order]
    if noise > 0:
        x = x + rng.normal(0.0, noise, x.shape)
    return x.astype(dtype), _labels(labels)


# --- scikit-learn's shipped data sets (optional extra) -----------------------------------------


def _sklearn_datasets(caller: str):
    try:
        from sklearn import datasets
    except ImportError as err:
        raise ImportError(f"{caller}() needs scikit-learn: pip install 'fbackprop[data]'") from err
    return datasets


def digits(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits, pixels scaled to ``[0, 1]`` (needs the ``data`` extra).

    Args:
        dtype: ``x``'s dtype (default float32).

    Returns:
        ``(x, labels)``: ``x: (1797, 64)``, integer labels ``(1797,)`` in ``0..9``.

    Examples:
        >>> x, labels = fb.data.digits()
        >>> x.shape, labels.shape
        ((1797, 64), (1797,))
    """
    data = _sklearn_datasets("digits").load_digits()
    return (data.data / 16.0).astype(dtype), _labels(data.target)


def breast_cancer(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's Wisconsin diagnostic breast cancer set, raw features (needs the ``data`` extra).

    Args:
        dtype: ``x``'s dtype (default float32).

    Returns:
        ``(x, labels)``: ``x: (569, 30)``, integer labels ``(569,)`` in ``{0, 1}``.

    Examples:
        >>> x, labels = fb.data.breast_cancer()
        >>> x.shape, labels.shape
        ((569, 30), (569,))
    """
    data = _sklearn_datasets("breast_cancer").load_breast_cancer()
    return data.data.astype(dtype), _labels(data.target)
