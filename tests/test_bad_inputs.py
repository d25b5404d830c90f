"""Bad inputs across the public API, one row each: the call, the exception it must raise, its message.

The rule: a ``ValueError``/``TypeError`` raised by fbackprop's own code at the API boundary, naming
the argument, what was expected and what came, before anything is compiled. Each row of ``CASES``
is ``Case(id, call, error, match)``: ``call()`` must raise ``error`` with a message matching the
regex ``match``, and compile nothing (XLA compilations counted by the ``compiles`` fixture), except
rows marked ``values=True``: a NaN/Inf is found by reading values, one fused on-device reduction,
which compiles once per shape.

Add rows here for every new public function (gradients, networks, training, data and compare;
curvature, spectra and optimizers have their own table in ``test_bad_inputs_second_order.py``).
Build the arrays a row needs at module level, not inside its ``call``: creating an array can
compile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fbackprop as fb


class Case(NamedTuple):
    id: str
    call: Callable[[], Any]
    error: type
    match: str
    values: bool = False  # found by reading values (NaN/Inf): may compile a reduction


NET = fb.mlp([3, 4, 2], activation="tanh")
P = NET.init(jax.random.key(0))
X = np.ones((6, 3))
Y = np.zeros((6, 2))
LABELS = np.array([0, 1, 1, 0, 1, 0])
X_NAN = X.copy()
X_NAN[2, 1] = np.nan
Y_INF = Y.copy()
Y_INF[4, 0] = np.inf
P_NAN = (P[0], {"W": P[1]["W"], "b": jnp.asarray(P[1]["b"]).at[1].set(jnp.nan)})
P_INT = ({"W": P[0]["W"], "b": np.zeros(4, np.int32)}, P[1])
P_MIXED = (P[0], {"W": np.asarray(P[1]["W"], np.float32), "b": np.asarray(P[1]["b"], np.float32)})
STACKED = fb.init_many(NET, jax.random.key(1), 3)
SGD = optax.sgd(0.1)
KEY = jax.random.key(0)


def apply(params, x):
    """A model fbackprop knows only as a callable (as a Flax or Equinox apply)."""
    return NET.apply(params, x)


def train(*args, **kwargs):
    """``fb.train(NET, "squared_error", P, X, Y, SGD, epochs=1)`` with some arguments replaced."""
    call = dict(model=NET, loss="squared_error", params=P, x=X, y=Y, optimizer=SGD, epochs=1)
    call.update(kwargs)
    return fb.train(
        call.pop("model"),
        call.pop("loss"),
        call.pop("params"),
        call.pop("x"),
        call.pop("y"),
        call.pop("optimizer"),
        **call,
    )


def train_many(**kwargs):
    call = dict(model=NET, loss="squared_error", params=STACKED, x=X, y=Y, optimizer=SGD, epochs=1)
    call.update(kwargs)
    return fb.train_many(
        call.pop("model"),
        call.pop("loss"),
        call.pop("params"),
        call.pop("x"),
        call.pop("y"),
        call.pop("optimizer"),
        **call,
    )


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
NONFINITE = r"holds 1 non-finite value \(the first, {}, at index {}\); expected finite numbers"

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
CASES += [
    Case(
        "train: NaN in x names x, not the parameters",
        lambda: train(x=X_NAN),
        ValueError,
        r"^x " + NONFINITE.format("nan", r"\(2, 1\)"),
        values=True,
    ),
    Case(
        "train: Inf in y",
        lambda: train(y=Y_INF),
        ValueError,
        r"^squared_error: y holds 1 non-finite",
        values=True,
    ),
    Case(
        "train: NaN in params",
        lambda: train(params=P_NAN),
        ValueError,
        r"^params\[1\]\['b'\] holds",
        values=True,
    ),
    Case(
        "train: NaN in val",
        lambda: train(val=(X_NAN, Y)),
        ValueError,
        r"^val=\(x_val, y_val\): x holds 1 non-finite value",
        values=True,
    ),
    Case(
        "train_many: NaN in x", lambda: train_many(x=X_NAN), ValueError, r"^x holds 1 non-finite", values=True
    ),
]

# --- dtypes: the params' dtype is the computation's; integer or mixed params are refused ------------
CASES += [
    Case(
        "train: an integer leaf in params",
        lambda: train(params=P_INT),
        TypeError,
        r"params\[0\]\['b'\] has dtype int32; parameters must be real floating point",
    ),
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
    Case(
        "train: integer x",
        lambda: train(x=X.astype(np.int64)),
        TypeError,
        r"x must be a real floating-point array .*got dtype int64",
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
        "train: epochs=-1",
        lambda: train(epochs=-1),
        ValueError,
        r"^epochs must be an integer from 1 to inf; got -1$",
    ),
    Case(
        "train: epochs=2.5",
        lambda: train(epochs=2.5),
        TypeError,
        r"^epochs must be an integer; got 2\.5 \(float\)$",
    ),
    Case("train: epochs=0", lambda: train(epochs=0), ValueError, r"^epochs must be an integer from 1"),
    Case(
        "train: batch_size=2.0",
        lambda: train(mode="minibatch", batch_size=2.0, key=KEY),
        TypeError,
        r"^batch_size must be an integer; got 2\.0",
    ),
    Case(
        "train: batch_size=0",
        lambda: train(mode="minibatch", batch_size=0, key=KEY),
        ValueError,
        r"batch_size must be an integer from 1 to N = 6 for mode='minibatch'; got 0",
    ),
    Case(
        "train: minibatch without batch_size",
        lambda: train(mode="minibatch", key=KEY),
        ValueError,
        r"mode='minibatch' needs batch_size, an integer from 1 to N = 6",
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
OPTAX = (
    r"optimizer must be an optax GradientTransformation such as optax\.sgd\(0\.1\) or optax\.adam\(1e-3\); "
)
CASES += [
    Case("train: optimizer=0", lambda: train(optimizer=0), TypeError, "^" + OPTAX + r"got 0 \(int\)$"),
    Case(
        "train: optimizer=0.1", lambda: train(optimizer=0.1), TypeError, "^" + OPTAX + r"got 0\.1 \(float\)$"
    ),
    Case(
        "train: optimizer=optax.sgd (the factory)",
        lambda: train(optimizer=optax.sgd),
        TypeError,
        "^" + OPTAX + r"got <function sgd",
    ),
    Case(
        "train: batch_size in batch mode",
        lambda: train(batch_size=4),
        ValueError,
        r"^batch_size is used only by mode='minibatch'; got batch_size=4 with mode='batch'",
    ),
    Case(
        "train: batch_size in online mode",
        lambda: train(mode="online", batch_size=np.int64(2)),
        ValueError,
        r"^batch_size is used only by mode='minibatch'; got batch_size=np\.int64\(2\) with mode='online'",
    ),
    Case(
        "train: val=(x,)",
        lambda: train(val=(X,)),
        TypeError,
        r"^val must be a pair \(x_val, y_val\) of validation inputs and targets; got a tuple of length 1$",
    ),
    Case(
        "train: val=x",
        lambda: train(val=X),
        TypeError,
        r"^val must be a pair \(x_val, y_val\).*got an array of shape \(6, 3\)$",
    ),
    Case(
        "train: val of another width",
        lambda: train(val=(np.ones((2, 4)), np.zeros((2, 2)))),
        ValueError,
        r"^val=\(x_val, y_val\): x has 4 features but the network expects 3",
    ),
    Case(
        "train: goal='low'",
        lambda: train(goal="low"),
        TypeError,
        r"^goal must be a real number; got 'low' \(str\)$",
    ),
    Case(
        "train: goal=nan",
        lambda: train(goal=float("nan")),
        ValueError,
        r"^goal must be a real number, not NaN; got nan$",
    ),
    Case(
        "train: key=0",
        lambda: train(mode="minibatch", batch_size=2, key=0),
        TypeError,
        r"^key must be a jax\.random key, e\.g\. jax\.random\.key\(0\); got 0$",
    ),
    Case(
        "train: key of floats",
        lambda: train(key=np.zeros(2)),
        TypeError,
        r"^key must be a jax\.random key.*got an array of dtype float64 and shape \(2,\)$",
    ),
    Case(
        "train: unknown mode",
        lambda: train(mode="stochastic"),
        ValueError,
        r"^unknown mode 'stochastic'; expected one of \['online', 'batch', 'minibatch'\]$",
    ),
    Case(
        "train: unknown gradient",
        lambda: train(gradient="manual"),
        ValueError,
        r"^gradient must be 'backprop', 'autodiff' or a \(params, x, y\) -> \(C, grads\) callable; "
        r"got 'manual'$",
    ),
    Case(
        "train: gradient=3",
        lambda: train(gradient=3),
        TypeError,
        r"^gradient must be 'backprop', 'autodiff'.*got 3$",
    ),
    Case(
        "train: unknown loss", lambda: train(loss="mse"), ValueError, r"unknown loss 'mse'; expected one of"
    ),
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
    Case(
        "train_many: epochs=-1",
        lambda: train_many(epochs=-1),
        ValueError,
        r"^epochs must be an integer from 1",
    ),
    Case(
        "train_many: optimizer=0", lambda: train_many(optimizer=0), TypeError, "^" + OPTAX + r"got 0 \(int\)$"
    ),
    Case(
        "train_many: batch_size in batch mode",
        lambda: train_many(batch_size=2),
        ValueError,
        r"^batch_size is used only by mode='minibatch'",
    ),
    Case("train_many: val=x", lambda: train_many(val=X), TypeError, r"^val must be a pair \(x_val, y_val\)"),
    Case("train_many: goal='low'", lambda: train_many(goal="low"), TypeError, r"^goal must be a real number"),
    Case(
        "train_many: params not stacked",
        lambda: train_many(params=P),
        ValueError,
        r"^train_many: params must be stacked, every leaf with the same leading run axis K",
    ),
    Case(
        "train_many: hyper of the wrong length",
        lambda: train_many(optimizer=optax.sgd, hyper=np.ones(2)),
        ValueError,
        r"^hyper must hold one value per run: shape \(3,\); got shape \(2,\)$",
    ),
    Case(
        "train_many: keys=0",
        lambda: train_many(keys=0),
        TypeError,
        r"^keys must hold K = 3 jax\.random keys.*got 0$",
    ),
    Case(
        "train_many: one key for three runs",
        lambda: train_many(keys=KEY),
        TypeError,
        r"^keys must hold K = 3 jax\.random keys",
    ),
]

# --- the right alternative for an apply callable ------------------------------------------------------
CASES += [
    Case(
        "train: apply callable with gradient='backprop'",
        lambda: train(model=apply),
        TypeError,
        r'^fb\.train\(gradient="backprop"\) is hand-written .*got <function apply.*use gradient="autodiff"$',
    ),
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


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, compiles):
    with pytest.raises(case.error, match=case.match):
        case.call()
    if not case.values:
        assert compiles() == 0, "the error must come before anything is compiled"


def test_every_case_id_is_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
