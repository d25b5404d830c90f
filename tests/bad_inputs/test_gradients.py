"""Bad inputs to networks (``fb.mlp``, ``fb.init_many``) and the gradient factories (``fb.backprop``,
``fb.autodiff``, ``fb.numerical_grad``, ...): one row a case (``cases.py``: the runner, how to add one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import fbackprop as fb

from .cases import NONFINITE, Case, check, table

NET = fb.mlp([3, 4, 2], activation="tanh")
P = NET.init(jax.random.key(0))
X = np.ones((6, 3))
Y = np.zeros((6, 2))
X_NAN = X.copy()
X_NAN[2, 1] = np.nan
Y_INF = Y.copy()
Y_INF[4, 0] = np.inf
P_NAN = (P[0], {"W": P[1]["W"], "b": jnp.asarray(P[1]["b"]).at[1].set(jnp.nan)})
P_INT = ({"W": P[0]["W"], "b": np.zeros(4, np.int32)}, P[1])
P_MIXED = (P[0], {"W": np.asarray(P[1]["W"], np.float32), "b": np.asarray(P[1]["b"], np.float32)})
KEY = jax.random.key(0)


def apply(params, x):
    """A model fbackprop knows only as a callable (as a Flax or Equinox apply)."""
    return NET.apply(params, x)


GRADIENTS = {
    "backprop": fb.backprop,
    "value_and_backprop": fb.value_and_backprop,
    "per_example_grads": fb.per_example_grads,
    "backprop_trace": fb.backprop_trace,
    "autodiff": fb.autodiff,
    "value_and_autodiff": fb.value_and_autodiff,
    "forward_mode": fb.forward_mode,
    "numerical_grad": fb.numerical_grad,
}

CASES: list[Case] = []

# --- non-finite data or params (outside jit: the array, the leaf and the index) ---------------------
for name, grad in GRADIENTS.items():
    CASES += [
        Case(
            f"{name}: NaN in x",
            lambda g=grad: g(NET, "squared_error")(P, X_NAN, Y),
            ValueError,
            r"^x " + NONFINITE.format("nan", r"\(2, 1\)"),
            values=True,
        ),
        Case(
            f"{name}: Inf in y",
            lambda g=grad: g(NET, "squared_error")(P, X, Y_INF),
            ValueError,
            r"^squared_error: y " + NONFINITE.format("inf", r"\(4, 0\)"),
            values=True,
        ),
        Case(
            f"{name}: NaN in params",
            lambda g=grad: g(NET, "squared_error")(P_NAN, X, Y),
            ValueError,
            r"^params\[1\]\['b'\] " + NONFINITE.format("nan", r"\(1,\)"),
            values=True,
        ),
    ]

# --- dtypes: the params' dtype is the computation's; integer or mixed params are refused ------------
CASES += [
    Case(
        "backprop: an integer leaf in params",
        lambda: fb.backprop(NET, "squared_error")(P_INT, X, Y),
        TypeError,
        r"params\[0\]\['b'\] has dtype int32",
    ),
    Case(
        "autodiff: mixed float32/float64 params",
        lambda: fb.autodiff(NET, "squared_error")(P_MIXED, X, Y),
        TypeError,
        r"params mixes dtypes \{'float64': .*'float32': .*\}",
    ),
]

# --- integer-like values: any integer type accepted, floats and bools refused -----------------------
CASES += [
    Case(
        "mlp: a float size",
        lambda: fb.mlp([3, 2.5, 1]),
        TypeError,
        r"^sizes\[1\] must be an integer; got 2\.5 \(float\)",
    ),
    Case(
        "mlp: a float64 size",
        lambda: fb.mlp([3, np.float64(4.0), 1]),
        TypeError,
        r"^sizes\[1\] must be an integer",
    ),
    Case(
        "mlp: a bool size",
        lambda: fb.mlp([3, True, 1]),
        TypeError,
        r"^sizes\[1\] must be an integer; got True",
    ),
    Case(
        "mlp: a zero size",
        lambda: fb.mlp([3, 0, 1]),
        ValueError,
        r"^sizes\[1\] must be an integer from 1 to inf; got 0$",
    ),
    Case(
        "mlp: one size",
        lambda: fb.mlp([3]),
        ValueError,
        r"sizes must list at least the input and output widths",
    ),
    Case(
        "mlp: sizes not a list", lambda: fb.mlp(3), TypeError, r"sizes must be a list of layer widths.*got 3"
    ),
    Case(
        "forward_mode: chunk_size=0",
        lambda: fb.forward_mode(NET, "squared_error", chunk_size=0),
        ValueError,
        r"^chunk_size must be an integer from 1 to inf; got 0$",
    ),
    Case(
        "numerical_grad: chunk_size=8.0",
        lambda: fb.numerical_grad(NET, "squared_error", chunk_size=8.0),
        TypeError,
        r"^chunk_size must be an integer; got 8\.0",
    ),
    Case("init_many: k=0", lambda: fb.init_many(NET, KEY, 0), ValueError, r"^k must be an integer from 1"),
]

# --- options -----------------------------------------------------------------------------------------
CASES += [
    Case(
        "numerical_grad: eps=0",
        lambda: fb.numerical_grad(NET, "squared_error", eps=0),
        ValueError,
        r"^eps must lie in \(0\.0, inf\]; got 0\.0$",
    ),
    Case(
        "numerical_grad: eps<0",
        lambda: fb.numerical_grad(NET, "squared_error", eps=-1e-6),
        ValueError,
        r"^eps must lie in \(0\.0, inf\]; got -1e-06$",
    ),
    Case(
        "numerical_grad: eps=nan",
        lambda: fb.numerical_grad(NET, "squared_error", eps=float("nan")),
        ValueError,
        r"^eps must be a finite number; got nan$",
    ),
    Case(
        "mlp: unknown activation",
        lambda: fb.mlp([2, 2, 1], activation="sigmoidal"),
        ValueError,
        r"^unknown activation 'sigmoidal'; expected one of \[.*'sigmoid'.*\]",
    ),
    Case(
        "mlp: unknown init",
        lambda: fb.mlp([2, 1], init="xavier"),
        ValueError,
        r"^unknown init 'xavier'; expected one of",
    ),
]

# --- the right alternative for an apply callable ------------------------------------------------------
CASES += [
    Case(
        "backprop: apply callable",
        lambda: fb.backprop(apply, "squared_error"),
        TypeError,
        r"^fb\.backprop is hand-written.*use fb\.autodiff\(apply, loss\)$",
    ),
    Case(
        "value_and_backprop: apply callable",
        lambda: fb.value_and_backprop(apply, "squared_error"),
        TypeError,
        r"use fb\.value_and_autodiff\(apply, loss\)$",
    ),
    Case(
        "per_example_grads: apply callable",
        lambda: fb.per_example_grads(apply, "squared_error"),
        TypeError,
        r"use jax\.vmap\(fb\.autodiff\(apply, loss\)",
    ),
    Case(
        "backprop_trace: apply callable",
        lambda: fb.backprop_trace(apply, "squared_error"),
        TypeError,
        r"use fb\.autodiff\(apply, loss\) \(a trace needs the layers\)$",
    ),
    Case(
        "autodiff: not callable",
        lambda: fb.autodiff(3, "squared_error"),
        TypeError,
        r"expected an fbackprop Network or an apply\(params, x\) callable; got int",
    ),
]


@table(CASES)
def test_bad_input(case, compiles):
    check(case, compiles)
