"""Bad inputs to the data sets and helpers (``fb.data``) and to ``fb.compare`` and ``fb.tolerance``: one
row a case (``cases.py``: the runner, how to add one).
"""

from __future__ import annotations

import jax
import numpy as np

import fbackprop as fb

from .cases import Case, check, table

NET = fb.mlp([3, 4, 2], activation="tanh")
P = NET.init(jax.random.key(0))
X = np.ones((6, 3))
Y = np.zeros((6, 2))

CASES: list[Case] = []

# --- integer-like values: any integer type accepted, floats and bools refused -----------------------
CASES += [
    Case(
        "data.parity(3.0)",
        lambda: fb.data.parity(3.0),
        TypeError,
        r"^parity: n must be an integer; got 3\.0 \(float\)$",
    ),
    Case(
        "data.parity(9)",
        lambda: fb.data.parity(9),
        ValueError,
        r"^parity: n must be an integer from 2 to 8; got 9$",
    ),
    Case(
        "data.sine(n=0)", lambda: fb.data.sine(0), ValueError, r"^n must be an integer from 1 to inf; got 0$"
    ),
    Case("data.sine(n=10.0)", lambda: fb.data.sine(10.0), TypeError, r"^n must be an integer; got 10\.0"),
    Case(
        "data.two_spirals(n_points=0)",
        lambda: fb.data.two_spirals(0),
        ValueError,
        r"^n_points must be an integer from 1",
    ),
    Case(
        "data.two_moons(n=1)",
        lambda: fb.data.two_moons(1),
        ValueError,
        r"^n must be an integer from 2 to inf; got 1$",
    ),
    Case("data.peaks(n=2.5)", lambda: fb.data.peaks(2.5), TypeError, r"^n must be an integer; got 2\.5"),
    Case(
        "data.sine(seed=-1)",
        lambda: fb.data.sine(10, 0.1, seed=-1),
        ValueError,
        r"^seed must be an integer from 0",
    ),
    Case(
        "data.split(seed=0.5)",
        lambda: fb.data.split(X, Y, seed=0.5),
        TypeError,
        r"^seed must be an integer; got 0\.5",
    ),
]

# --- options -----------------------------------------------------------------------------------------
CASES += [
    Case(
        "data.sine: noise<0",
        lambda: fb.data.sine(10, noise=-0.1),
        ValueError,
        r"^noise must lie in \[0\.0, inf\]; got -0\.1$",
    ),
    Case(
        "data.two_spirals: noise<0",
        lambda: fb.data.two_spirals(5, noise=-1),
        ValueError,
        r"^noise must lie in \[0\.0",
    ),
    Case(
        "data.two_moons: noise<0",
        lambda: fb.data.two_moons(10, noise=-1e-3),
        ValueError,
        r"^noise must lie in \[0\.0",
    ),
    Case(
        "data.split: an empty part",
        lambda: fb.data.split(X[:3], Y[:3]),
        ValueError,
        r"^split: 3 examples cut by fractions \(0\.6, 0\.2, 0\.2\) give an empty val part "
        r"\(sizes \[2, 0, 1\]\)",
    ),
    Case(
        "data.standardize: another width",
        lambda: fb.data.standardize(X, np.ones((2, 4))),
        ValueError,
        r"^standardize: others\[0\] must have shape \(M, 3\), the width of x_train; got shape \(2, 4\)$",
    ),
    Case(
        "data.standardize: a flat x_train",
        lambda: fb.data.standardize(np.ones(5)),
        ValueError,
        r"^standardize: x_train must have shape \(N, n_in\) with N >= 1; got shape \(5,\)$",
    ),
    Case(
        "tolerance('int32')",
        lambda: fb.tolerance("int32"),
        ValueError,
        r"^tolerance: dtype must be one of the floating dtypes "
        r"\['float64', 'float32', 'bfloat16', 'float16'\]; got 'int32'$",
    ),
    Case(
        "tolerance('double-ish')",
        lambda: fb.tolerance("double-ish"),
        ValueError,
        r"^tolerance: dtype must be one of",
    ),
    Case(
        "compare: unknown method",
        lambda: fb.compare(P, P, method="fd"),
        ValueError,
        r"^method must be one of \['exact', .*'finite_difference'.*\]; got 'fd'$",
    ),
    Case(
        "compare: rtol<0",
        lambda: fb.compare(P, P, rtol=-1.0),
        ValueError,
        r"^rtol must lie in \[0\.0, inf\]; got -1\.0$",
    ),
]


@table(CASES)
def test_bad_input(case, compiles):
    check(case, compiles)
