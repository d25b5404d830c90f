"""Bad inputs to ``fb.train`` and ``fb.train_many``: one row a case (``cases.py``: the runner, how to add
one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
STACKED = fb.init_many(NET, jax.random.key(1), 3)
SGD = optax.sgd(0.1)
KEY = jax.random.key(0)
OPTAX = (
    r"optimizer must be an optax GradientTransformation such as optax\.sgd\(0\.1\) or optax\.adam\(1e-3\); "
)


def apply(params, x):
    """A model fbackprop knows only as a callable (as a Flax or Equinox apply)."""
    return NET.apply(params, x)


def train(**kwargs):
    """``fb.train(NET, "squared_error", P, X, Y, SGD, epochs=1)`` with some arguments replaced."""
    call = dict(model=NET, loss="squared_error", params=P, x=X, y=Y, optimizer=SGD, epochs=1)
    call.update(kwargs)
    positional = [call.pop(k) for k in ("model", "loss", "params", "x", "y", "optimizer")]
    return fb.train(*positional, **call)


def train_many(**kwargs):
    """``fb.train_many(NET, "squared_error", STACKED, X, Y, SGD, epochs=1)`` with some arguments replaced."""
    call = dict(model=NET, loss="squared_error", params=STACKED, x=X, y=Y, optimizer=SGD, epochs=1)
    call.update(kwargs)
    positional = [call.pop(k) for k in ("model", "loss", "params", "x", "y", "optimizer")]
    return fb.train_many(*positional, **call)


CASES: list[Case] = []

# --- non-finite data or params (outside jit: the array, the leaf and the index) ---------------------
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
        r"^val: x holds 1 non-finite value",
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
        "train: integer x",
        lambda: train(x=X.astype(np.int64)),
        TypeError,
        r"x must be a real floating-point array .*got dtype int64",
    ),
]

# --- integer-like values: any integer type accepted, floats and bools refused -----------------------
CASES += [
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
]

# --- options -----------------------------------------------------------------------------------------
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
        r"^val must be a pair \(x_val, y_val\) of validation inputs and targets, or None; "
        r"got a tuple of length 1$",
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
        r"^val: x has 4 features but the network expects 3",
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
]


@table(CASES)
def test_bad_input(case, compiles):
    check(case, compiles)
