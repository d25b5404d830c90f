"""Every loss's hand-written gradient, Hessian and Hessian-vector product against autodiff, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from problems import LOSS_NAMES, targets

import fbackprop as fb
from fbackprop import losses as L


def batch(loss_name, n=7, k=4, seed=0, scale=3.0):
    kz, ky, kv = jax.random.split(jax.random.key(seed), 3)
    loss = L.get(loss_name)
    yhat = scale * jax.random.normal(kz, (n, k))
    y = loss.prepare(targets(ky, loss_name, n, k), k)
    return loss, yhat, y, jax.random.normal(kv, (n, k))


def per_example(loss, fn):
    """Apply ``fn`` to the single-example loss ``l(yhat_n, y_n)`` row by row (one compiled program:
    op-by-op dispatch of a Hessian compiles every small op on its own)."""
    single = lambda yh, yy: loss.value(yh[None], yy[None])[0]
    return jax.jit(jax.vmap(fn(single), in_axes=(0, 0)))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradient_matches_autodiff(name):
    loss, yhat, y, _ = batch(name)
    np.testing.assert_allclose(
        loss.grad(yhat, y), per_example(loss, jax.grad)(yhat, y), rtol=1e-10, atol=1e-14
    )
    # the batch-mean convention: dC/dyhat = grad / N
    np.testing.assert_allclose(
        jax.grad(loss)(yhat, y), loss.grad(yhat, y) / yhat.shape[0], rtol=1e-10, atol=1e-15
    )


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_hessian_and_hvp_match_autodiff(name):
    loss, yhat, y, v = batch(name)
    H = per_example(loss, jax.hessian)(yhat, y)
    np.testing.assert_allclose(loss.hessian(yhat, y), H, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(loss.hvp(yhat, y, v), jnp.einsum("nij,nj->ni", H, v), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradient_matches_finite_differences(name):
    loss, yhat, y, v = batch(name, scale=1.0)
    h = 1e-6
    fd = (loss.value(yhat + h * v, y) - loss.value(yhat - h * v, y)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(loss.grad(yhat, y) * v, axis=-1), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_stable_for_huge_logits(name, scale):
    loss, yhat, y, v = batch(name, scale=scale)
    for out in (loss.value(yhat, y), loss.grad(yhat, y), loss.hessian(yhat, y), loss.hvp(yhat, y, v)):
        assert bool(jnp.all(jnp.isfinite(out)))


def test_values():
    z = jnp.array([[0.0, 0.0]])
    np.testing.assert_allclose(L.cross_entropy(z, L.cross_entropy.prepare(jnp.array([1]), 2)), np.log(2.0))
    np.testing.assert_allclose(L.binary_cross_entropy(jnp.array([[0.0]]), jnp.array([[1.0]])), np.log(2.0))
    np.testing.assert_allclose(
        L.squared_error(jnp.array([[3.0], [1.0]]), jnp.array([[1.0], [1.0]])), 1.0
    )  # (4/2 + 0)/2


def test_integer_labels_equal_one_hot():
    loss, yhat, _, _ = batch("cross_entropy")
    labels = jnp.array([0, 3, 1, 2, 2, 0, 1])
    one_hot = jax.nn.one_hot(labels, 4)
    assert L.cross_entropy(yhat, L.cross_entropy.prepare(labels, 4)) == L.cross_entropy(yhat, one_hot)


def test_label_errors():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\).*from 0 to 4"):
        L.cross_entropy.prepare(jnp.array([0, 4]), 4)
    with pytest.raises(TypeError, match="must be integers"):
        L.cross_entropy.prepare(jnp.array([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match=r"y has shape \(5, 3\).*\(N, 2\)"):
        L.squared_error.prepare(jnp.zeros((5, 3)), 2)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown loss 'mse'.*'squared_error'"):
        L.get("mse")


# --- every public callable prepares and checks its targets, against plain NumPy formulas ---------------
def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_reference(name, z, Y, v):
    """The textbook formulas, one row per example: value, grad, hessian, hvp, hessian_sqrt (S S^T = H)."""
    n, k = z.shape
    if name == "squared_error":
        H = np.broadcast_to(np.eye(k), (n, k, k))
        return dict(value=0.5 * np.sum((z - Y) ** 2, axis=1), grad=z - Y, hessian=H, hvp=v, hessian_sqrt=H)
    if name == "cross_entropy":
        p = np_softmax(z)
        H = np.array([np.diag(q) - np.outer(q, q) for q in p])
        S = np.array([np.diag(np.sqrt(q)) - np.outer(q, np.sqrt(q)) for q in p])
        return dict(
            value=-np.sum(Y * np.log(p), axis=1),
            grad=p - Y,
            hessian=H,
            hvp=np.einsum("nij,nj->ni", H, v),
            hessian_sqrt=S,
        )
    s = np_sigmoid(z)
    H = np.array([np.diag(c) for c in s * (1 - s)])
    S = np.array([np.diag(np.sqrt(c)) for c in s * (1 - s)])
    value = -np.sum(Y * np.log(s) + (1 - Y) * np.log(1 - s), axis=1)
    return dict(value=value, grad=s - Y, hessian=H, hvp=np.einsum("nij,nj->ni", H, v), hessian_sqrt=S)


def target_form(name, form, n, k, rng):
    """``(y as passed, Y as the (N, k) float rows it means)`` for one accepted target form."""
    if name == "squared_error":
        Y = rng.normal(size=(n, k))
        return {
            "rows": (Y, Y),
            "int rows": (np.round(3 * Y).astype(np.int32), np.round(3 * Y)),
            "flat column": (Y[:, 0], Y),
            "list": (Y.tolist(), Y),
        }[form]
    if name == "binary_cross_entropy":
        P = rng.uniform(size=(n, k))
        B = P > 0.5
        return {
            "rows": (P, P),
            "bool rows": (B, B.astype(float)),
            "int rows": (B.astype(np.int64), B.astype(float)),
            "flat column": (P[:, 0], P),
            "flat int labels": (B[:, 0].astype(np.int32), B.astype(float)),
        }[form]
    labels = rng.integers(0, k, size=n)
    one_hot = np.eye(k)[labels]
    smooth = 0.9 * one_hot + 0.1 / k
    return {
        "labels": (labels, one_hot),
        "jax labels": (jnp.asarray(labels), one_hot),
        "one-hot": (one_hot, one_hot),
        "int one-hot": (one_hot.astype(np.int32), one_hot),
        "smoothed": (smooth, smooth),
    }[form]


FORMS = [
    ("squared_error", f, k)
    for f, k in [("rows", 3), ("int rows", 3), ("list", 3), ("rows", 1), ("flat column", 1)]
]
FORMS += [
    ("binary_cross_entropy", f, k)
    for f, k in [("rows", 3), ("bool rows", 3), ("int rows", 3), ("flat column", 1), ("flat int labels", 1)]
]
FORMS += [("cross_entropy", f, 3) for f in ["labels", "jax labels", "one-hot", "int one-hot", "smoothed"]]
CALLABLES = ["__call__", "value", "grad", "hessian", "hvp", "hessian_sqrt"]


@pytest.mark.parametrize("n", [3, 5])  # n == n_out == 3 is where broadcasting used to hide the bug
@pytest.mark.parametrize("fn", CALLABLES)
@pytest.mark.parametrize("name,form,k", FORMS)
def test_every_callable_matches_the_textbook_formula_for_every_target_form(name, form, k, fn, n):
    rng = np.random.default_rng(3)
    z, v = 2.0 * rng.normal(size=(n, k)), rng.normal(size=(n, k))
    y, Y = target_form(name, form, n, k, rng)
    loss, ref = L.get(name), np_reference(name, z, Y, v)
    if fn == "__call__":
        got, want = loss(z, y), np.mean(ref["value"])
    elif fn == "hvp":
        got, want = loss.hvp(z, y, v), ref["hvp"]
    else:
        got, want = getattr(loss, fn)(z, y), ref[fn]
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_the_reported_cases_now_give_the_right_number():
    # cross_entropy with integer labels and N == n_classes: 0.181, not 1.681
    z = jnp.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    np.testing.assert_allclose(
        L.cross_entropy(z, jnp.array([0, 1, 2])), np.log(np.exp(2) + 2) - 2, rtol=1e-14
    )
    # squared_error of an exact fit with y (N,) against yhat (N, 1): 0, not 2.0
    assert float(L.squared_error(jnp.array([[1.0], [2.0], [3.0]]), jnp.array([1.0, 2.0, 3.0]))) == 0.0


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_hessian_sqrt_factors_the_hessian(name):
    loss, yhat, y, _ = batch(name)
    S = loss.hessian_sqrt(yhat, y)
    np.testing.assert_allclose(
        jnp.einsum("nij,nkj->nik", S, S), loss.hessian(yhat, y), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("name,form,k", FORMS)
def test_prepare_is_idempotent(name, form, k):
    y = target_form(name, form, 4, k, np.random.default_rng(0))[0]
    loss = L.get(name)
    once = loss.prepare(y, k)
    assert once.shape == (4, k) and jnp.issubdtype(once.dtype, jnp.floating)
    np.testing.assert_array_equal(loss.prepare(once, k), once)


@pytest.mark.parametrize("fn", CALLABLES[1:])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_prepared_targets_cost_nothing_under_jit(name, fn):
    """The checks are static: the traced program of a public callable is its core's, equation for equation."""
    loss, yhat, y, v = batch(name)
    core = getattr(loss, fn).__wrapped__  # the unchecked function the public one wraps
    args = (yhat, y, v) if fn == "hvp" else (yhat, y)
    assert str(jax.make_jaxpr(getattr(loss, fn))(*args)) == str(jax.make_jaxpr(core)(*args))


def test_targets_take_the_outputs_dtype():
    z32, v = jnp.zeros((3, 2), jnp.float32), np.ones((3, 2))
    y = np.eye(2)[[0, 1, 1]]  # float64 targets: computed in the output's float32
    for name in LOSS_NAMES:
        loss = L.get(name)
        outs = [
            loss(z32, y),
            loss.value(z32, y),
            loss.grad(z32, y),
            loss.hessian(z32, y),
            loss.hvp(z32, y, v),
            loss.hessian_sqrt(z32, y),
        ]
        assert all(out.dtype == jnp.float32 for out in outs), (name, [out.dtype for out in outs])


# --- bad targets and outputs: a clear error from every callable --------------------------------------
Z3 = np.zeros((4, 3))
BAD = {
    "se flat y for a 3-wide output": (
        "squared_error",
        Z3,
        np.zeros(4),
        ValueError,
        r"y has shape \(4,\).*\(N, 3\)",
    ),
    "se too few rows": ("squared_error", Z3, np.zeros((3, 3)), ValueError, r"y has 3 rows but yhat has 4"),
    "se non-finite target": (
        "squared_error",
        Z3,
        np.array([[0, 0, 0]] * 3 + [[0, np.nan, 0]]),
        ValueError,
        r"squared_error: y holds 1 non-finite value \(the first, nan, at index \(3, 1\)\)",
    ),
    "se complex target": ("squared_error", Z3, np.zeros((4, 3), complex), TypeError, "real numbers"),
    "se string target": ("squared_error", Z3, [["a"] * 3] * 4, TypeError, "must hold real numbers.*<U1"),
    "se 1-d output": (
        "squared_error",
        np.zeros(4),
        np.zeros(4),
        ValueError,
        r"yhat must have shape \(N, n_out\).*got shape \(4,\).*yhat\[:, None\]",
    ),
    "se integer output": (
        "squared_error",
        np.zeros((4, 3), int),
        np.zeros((4, 3)),
        TypeError,
        "floating point",
    ),
    "ce float labels": ("cross_entropy", Z3, np.array([0.0, 1.0, 2.0, 1.0]), TypeError, "must be integers"),
    "ce label too large": (
        "cross_entropy",
        Z3,
        np.array([0, 1, 3, 1]),
        ValueError,
        r"\[0, 3\).*from 0 to 3 .*y\[2\] = 3",
    ),
    "ce negative label": (
        "cross_entropy",
        Z3,
        np.array([0, -1, 2, 1]),
        ValueError,
        r"from -1 to 2.*y\[1\] = -1",
    ),
    "ce labels as a column": (
        "cross_entropy",
        Z3,
        np.array([[0], [1], [2], [1]]),
        ValueError,
        r"pass y\[:, 0\]",
    ),
    "ce negative probability": (
        "cross_entropy",
        Z3,
        np.array([[1, 0, 0]] * 3 + [[1.2, -0.2, 0]]),
        ValueError,
        r"y\[3\] = .* has a negative entry",
    ),
    "ce row not summing to 1": (
        "cross_entropy",
        Z3,
        np.array([[1, 0, 0]] * 2 + [[0.5, 0.4, 0]] + [[0, 0, 1]]),
        ValueError,
        r"y\[2\] sums to 0.9, so it is not a probability vector",
    ),
    "ce one output": (
        "cross_entropy",
        np.zeros((4, 1)),
        np.zeros(4, int),
        ValueError,
        "at least 2 outputs.*binary_cross_entropy",
    ),
    "bce target above 1": (
        "binary_cross_entropy",
        Z3,
        np.array([[0, 1, 1]] * 3 + [[0, 2, 1]]),
        ValueError,
        r"\[0, 1\].*y\[3, 1\] = 2",
    ),
    "bce negative target": (
        "binary_cross_entropy",
        Z3,
        -np.ones((4, 3)),
        ValueError,
        r"y\[0, 0\] = -1.0 \(12 outside\)",
    ),
    "bce nan target": ("binary_cross_entropy", Z3, np.full((4, 3), np.nan), ValueError, r"\[0, 1\].*nan"),
    "bce flat y for a 3-wide output": ("binary_cross_entropy", Z3, np.zeros(4), ValueError, r"\(N, 3\)"),
}


@pytest.mark.parametrize("fn", CALLABLES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_targets_are_refused_by_every_callable(case, fn):
    name, yhat, y, error, message = BAD[case]
    loss = L.get(name)
    call = {
        "__call__": lambda: loss(yhat, y),
        "hvp": lambda: loss.hvp(yhat, y, np.zeros(np.shape(yhat))),
    }.get(fn, lambda: getattr(loss, fn)(yhat, y))
    with pytest.raises(error, match=message):
        call()


def test_hvp_refuses_a_tangent_of_another_shape():
    with pytest.raises(ValueError, match=r"v must have yhat's shape \(4, 3\); got \(4, 2\)"):
        L.squared_error.hvp(Z3, Z3, np.zeros((4, 2)))


def test_cross_entropy_on_a_one_output_network_is_refused_by_backprop():
    net = fb.mlp([2, 1])
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match="softmax over one logit is the constant 1.*binary_cross_entropy"):
        fb.backprop(net, "cross_entropy")(params, jnp.ones((3, 2)), jnp.zeros(3, int))


def test_binary_targets_out_of_range_are_refused_by_backprop():
    net = fb.mlp([2, 1])
    with pytest.raises(ValueError, match=r"binary_cross_entropy: targets must lie in \[0, 1\]"):
        fb.backprop(net, "binary_cross_entropy")(
            net.init(jax.random.key(0)), jnp.ones((3, 2)), jnp.array([0.0, 1.0, 3.0])
        )


# --- out-of-range labels under the user's own jit: NaN for that example, never a wrong finite number ----
@pytest.mark.parametrize("bad", [3, -1, 100])
@pytest.mark.parametrize("fn", ["value", "grad", "hessian", "hvp", "hessian_sqrt"])
def test_out_of_range_label_under_jit_is_nan_for_that_example(fn, bad):
    z = jnp.array([[1.0, -0.5, 0.2], [0.3, 0.1, -2.0], [-1.0, 2.0, 0.5]])
    good, labels = jnp.array([0, 2, 1]), jnp.array([0, bad, 1])
    loss = L.cross_entropy
    f = (lambda z, y: loss.hvp(z, y, jnp.ones_like(z))) if fn == "hvp" else getattr(loss, fn)
    out, ref = np.asarray(jax.jit(f)(z, labels)), np.asarray(f(z, good))
    assert np.all(np.isnan(out[1]))
    np.testing.assert_allclose(out[[0, 2]], ref[[0, 2]], rtol=1e-14)


def test_out_of_range_label_under_jit_makes_backprop_nan():
    net = fb.mlp([2, 4, 3], activation="tanh")
    params, x = net.init(jax.random.key(1)), jax.random.normal(jax.random.key(2), (5, 2))
    bad = jnp.array([0, 1, 7, 2, 1])
    C, grads = jax.jit(fb.value_and_backprop(net, "cross_entropy"))(params, x, bad)
    assert np.isnan(C) and all(np.all(np.isnan(g)) for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):  # outside jit: refused
        fb.value_and_backprop(net, "cross_entropy")(params, x, bad)


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy"])
def test_autodiff_twin_at_tied_and_zero_logits(name):
    """The values are written around the largest logit (and the sign of z): their autodiff derivatives
    must still be right where logits tie or are exactly 0 (zero-initialized output layers)."""
    z = jnp.array([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0], [2.0, -1.0, 2.0]])
    y = jnp.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = L.get(name)
    np.testing.assert_allclose(per_example(loss, jax.grad)(z, y), loss.grad(z, y), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        per_example(loss, jax.hessian)(z, y), loss.hessian(z, y), rtol=1e-12, atol=1e-15
    )


def test_loss_written_with_seven_fields_constructs_and_trains():
    """``hessian_sqrt`` is the optional last field: a ``Loss(...)`` written before it existed still
    builds (``hessian_sqrt=None``), and the gradient code, which never calls it, runs with it."""
    se = L.squared_error
    mine = L.Loss("mine", se.value, se.grad, se.hessian, se.hvp, se.prepare, se.sample)
    assert mine.hessian_sqrt is None and L.get(mine) is mine
    net = fb.mlp([2, 3, 1])
    params, x = net.init(jax.random.key(0)), jax.random.normal(jax.random.key(1), (4, 2))
    y = jnp.sin(x[:, :1])
    C, grads = fb.value_and_backprop(net, mine)(params, x, y)
    C_ref, grads_ref = fb.value_and_backprop(net, se)(params, x, y)
    np.testing.assert_allclose(C, C_ref, rtol=1e-14)
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref)):
        np.testing.assert_allclose(g, g_ref, rtol=1e-13)
