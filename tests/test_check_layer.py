"""check_layer: every built-in layer passes it; it catches a wrong piece and names it; a user's layer."""

import dataclasses
import doctest

import jax
import jax.numpy as jnp
import pytest

import fbackprop as fb
from fbackprop import activations
from fbackprop.check_layer import LayerReport, check_layer
from fbackprop.layers import AvgPool2D, Conv2D, Flatten, MaxPool2D, Residual, Serial
from fbackprop.layers.activation import Activation
from fbackprop.layers.dense import Dense
from fbackprop.layers.norm import LayerNorm

PASSES = [
    "backward (input)",
    "forward_r",
    "forward_r (fixed input)",
    "backward_r",
    "backward_r (fixed input)",
]
PASSES += ["backward2", "backward2 (GGN)"]
READOUTS = ["per_example_grads", "hessian_diag", "per_example_hessian_diag", "hessian_block"]
READOUTS += ["hessian_block (GGN)"]


def expected_pieces(layer) -> set[str]:
    """What check_layer must report for ``layer``: the passes, and the readouts of a layer with params."""
    out = set(PASSES)
    if hasattr(layer, "reference"):
        out.add("forward vs reference")
    if layer.has_params:
        out |= {"backward (params)", *READOUTS}
    if layer.has_params and hasattr(layer, "jacobian_gram"):
        out.add("jacobian_gram")
    if layer.has_params and hasattr(layer, "kfac_factors") and isinstance(layer, (Dense, Conv2D)):
        out.add("kfac_factors")
    return out


# One row per built-in layer and configuration: (layer, one example's input shape). Add rows here.
BUILT_IN = [
    pytest.param(Dense(3), (4,), id="Dense(3)-(4,)"),
    pytest.param(Dense(1), (2,), id="Dense(1)-(2,)"),
    *[
        pytest.param(Activation(name), (2, 3), id=f"Activation({name})-(2,3)")
        for name in activations.ACTIVATIONS
    ],
    pytest.param(LayerNorm(), (5,), id="LayerNorm-(5,)"),
    pytest.param(LayerNorm(), (2, 3, 4), id="LayerNorm-(2,3,4)"),
    pytest.param(LayerNorm(eps=0.5), (5,), id="LayerNorm(eps=0.5)-(5,)"),
    pytest.param(LayerNorm(eps=1e-2), (3, 1, 2), id="LayerNorm(eps=1e-2)-(3,1,2)"),
    # convolution: kernel sizes, strides, paddings, channel counts, odd spatial sizes
    *[
        pytest.param(Conv2D(c_out, k, s, pad), shape, id=f"Conv2D({c_out},{k},s{s},{pad})-{shape}")
        for c_out, k, s, pad, shape in [
            (2, (1, 1), 1, "VALID", (5, 7, 1)),
            (2, (2, 3), 2, "SAME", (5, 7, 3)),
            (1, (3, 3), 1, "SAME", (5, 7, 2)),
            (3, (3, 3), 2, "VALID", (5, 7, 2)),
            (2, (3, 3), (2, 1), "SAME", (5, 7, 2)),
            (3, (2, 2), (1, 3), "VALID", (4, 7, 1)),
        ]
    ],
    *[
        pytest.param(pool(w, s), (5, 7, 2), id=f"{pool.__name__}({w},{s})-(5,7,2)")
        for pool in (AvgPool2D, MaxPool2D)
        for w, s in [((2, 2), None), ((3, 2), 1), ((2, 3), (1, 2))]
    ],
    pytest.param(Flatten(), (5, 7, 2), id="Flatten-(5,7,2)"),
    pytest.param(Flatten(), (3,), id="Flatten-(3,)"),
    # combinators: they follow the same protocol, so the same harness checks them
    pytest.param(Residual(Dense(3), Activation("tanh")), (3,), id="Residual(Dense,tanh)-(3,)"),
    pytest.param(
        Residual(Conv2D(2, (3, 3), padding="SAME"), Activation("softplus")),
        (4, 5, 2),
        id="Residual(Conv2D)-(4,5,2)",
    ),
    pytest.param(Residual(Activation("tanh")), (2, 3), id="Residual(tanh)-(2,3)"),
    pytest.param(
        Serial(Conv2D(2, (2, 2)), Activation("gelu"), MaxPool2D(2), Flatten(), Dense(2)),
        (5, 5, 1),
        id="Serial-(5,5,1)",
    ),
]


@pytest.mark.parametrize("layer, input_shape", BUILT_IN)
def test_built_in_layer_passes(layer, input_shape, key):
    report = check_layer(layer, input_shape, key)
    assert isinstance(report, LayerReport)
    assert set(report.pieces) == expected_pieces(layer), str(report)
    assert report.ok and report.failed == () and report.not_checked == (), str(report)
    assert all(r.max_rel_err <= 1e-10 for r in report.rows)
    assert str(report).splitlines()[-1].endswith(": ok")


def test_every_activation_is_in_the_table():
    ids = {p.id for p in BUILT_IN}
    assert all(f"Activation({name})-(2,3)" in ids for name in activations.ACTIVATIONS)
    assert len(activations.ACTIVATIONS) == 11


# --- deliberately wrong layers: check_layer catches each and names the piece ----------------------
class StaleWeightBackward(Dense):
    """(BP2) with a weight off by one part in a million: a bug autodiff sees and a loss curve does not."""

    def backward(self, theta, a_prev, delta):
        g, dtheta = super().backward(theta, a_prev, delta)
        return delta @ (theta["W"] * (1 + 1e-6)), dtheta


class GGNForExact(LayerNorm):
    """A second-order backward that drops LayerNorm's second-derivative term even when exact=True."""

    def backward2(self, theta, cache, H, g, exact=True):
        return super().backward2(theta, cache, H, g, exact=False)


class NoSigmaTangent(LayerNorm):
    """An R-operator that forgets ``R{sigma}``: ``R{xhat} = (r - mean(r)) / sigma``."""

    def forward_r(self, theta, v, cache, r_x):
        xhat, sigma = cache
        r_y = v["gamma"] * xhat + v["beta"]
        if r_x is None:
            return r_y, None
        r_xhat = (r_x - jnp.mean(r_x, axis=-1, keepdims=True)) / sigma
        return r_y + theta["gamma"] * r_xhat, (r_xhat, jnp.zeros_like(sigma))


class UnsquaredHessianDiag(Dense):
    """``sum_n a_nj H_n,ii`` where the diagonal needs ``a_nj^2``."""

    def hessian_diag(self, theta, a_prev, H, g=None, exact=True):
        h = jnp.diagonal(H, axis1=1, axis2=2)
        return {"W": h.T @ a_prev, "b": jnp.sum(h, axis=0)}


@pytest.mark.parametrize(
    "layer, input_shape, wrong, right",
    [
        pytest.param(
            StaleWeightBackward(3), (4,), {"backward (input)"}, {"backward (params)"}, id="backward"
        ),
        pytest.param(
            GGNForExact(), (2, 3), {"backward2"}, {"backward2 (GGN)", "backward (input)"}, id="backward2"
        ),
        pytest.param(
            NoSigmaTangent(),
            (4,),
            {"forward_r", "backward_r"},
            {"forward_r (fixed input)", "backward_r (fixed input)", "backward2"},
            id="forward_r",
        ),
        pytest.param(
            UnsquaredHessianDiag(3),
            (4,),
            {"hessian_diag"},
            {"per_example_hessian_diag", "hessian_block"},
            id="hessian_diag",
        ),
    ],
)
def test_catches_a_wrong_piece_and_names_it(layer, input_shape, wrong, right, key):
    report = check_layer(layer, input_shape, key)
    assert not report.ok
    assert wrong <= set(report.failed), str(report)
    assert not right & set(report.failed), str(report)
    rows = {r.piece: r for r in report.rows}
    assert all(rows[name].max_rel_err > 1e-8 for name in wrong)
    text = str(report)
    assert "failed: " in text.splitlines()[-1]
    for name in wrong:
        assert name in text.splitlines()[-1]
        assert any(line.startswith(name) and "MISMATCH" in line for line in text.splitlines())


def test_catches_a_tiny_error_well_below_float32_noise(key):
    # 1e-6 relative in one weight of (BP2): float64 at 1e-10 sees it, float32 could not
    row = {r.piece: r for r in check_layer(StaleWeightBackward(3), (4,), key).rows}["backward (input)"]
    assert 1e-7 < row.max_rel_err < 1e-5 and row.ok is False


# --- missing methods and pieces that raise -------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FirstOrderOnly:
    """A dense layer with the first-order passes only: no backward2, no readouts."""

    n_out: int = 2
    has_params = True

    def init(self, key, in_shape, dtype):
        return Dense(self.n_out).init(key, in_shape, dtype)

    def forward(self, theta, x):
        return Dense(self.n_out).forward(theta, x)

    def backward(self, theta, cache, g):
        return Dense(self.n_out).backward(theta, cache, g)

    def forward_r(self, theta, v, cache, r_x):
        return Dense(self.n_out).forward_r(theta, v, cache, r_x)

    def backward_r(self, theta, v, cache, r_cache, g, r_g):
        return Dense(self.n_out).backward_r(theta, v, cache, r_cache, g, r_g)


def test_a_missing_pass_fails_naming_the_method_and_missing_readouts_are_not_checked(key):
    report = check_layer(FirstOrderOnly(), (3,), key)
    assert report.failed == ("backward2", "backward2 (GGN)")
    assert set(report.not_checked) == set(READOUTS)
    rows = {r.piece: r for r in report.rows}
    assert rows["backward2"].note == "add backward2(theta, cache, H, g, exact) -> A"
    assert rows["hessian_diag"].note == "add hessian_diag(theta, cache, H, g, exact) -> diag"
    assert rows["forward_r"].ok and rows["backward_r"].ok and rows["backward (params)"].ok
    text = str(report)
    assert "MISSING: add backward2(" in text and "not checked: add hessian_diag(" in text
    assert text.splitlines()[-1].endswith("failed: backward2, backward2 (GGN)")


class RaisingBlock(Dense):
    def hessian_block(self, theta, a_prev, H, g=None, exact=True):
        raise NotImplementedError("hessian_block is future work")


def test_a_piece_that_raises_is_a_failing_row_quoting_the_error(key):
    report = check_layer(RaisingBlock(2), (3,), key)
    assert report.failed == ("hessian_block", "hessian_block (GGN)")
    note = {r.piece: r for r in report.rows}["hessian_block"].note
    assert note == "raised NotImplementedError: hessian_block is future work"


class WrongShapeReadout(Dense):
    def per_example_grads(self, theta, a_prev, delta):
        return {"W": delta.T @ a_prev, "b": jnp.sum(delta, axis=0)}  # summed: no leading N


def test_a_wrongly_shaped_result_is_a_failing_row_naming_the_shapes(key):
    report = check_layer(WrongShapeReadout(2), (3,), key)
    assert report.failed == ("per_example_grads",)
    assert {r.piece: r for r in report.rows}["per_example_grads"].note == (
        "returned shape (2, 3), expected (3, 2, 3)"
    )


# --- a layer written by a user ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scale:
    """A learned elementwise scale over the last axis, ``y = s * x``, ``s: (d,)``, written as a user would."""

    has_params = True

    def init(self, key, in_shape, dtype):
        return {"s": jnp.ones(in_shape[-1:], dtype)}, tuple(in_shape)

    def forward(self, theta, x):
        return theta["s"] * x, x

    def backward(self, theta, x, g):
        return theta["s"] * g, {"s": jnp.sum(g * x, axis=tuple(range(x.ndim - 1)))}

    def forward_r(self, theta, v, x, r_x):
        r_y = v["s"] * x
        return (r_y if r_x is None else r_y + theta["s"] * r_x), r_x

    def backward_r(self, theta, v, x, r_x, g, r_g):
        r_ds = r_g * x if r_x is None else r_g * x + g * r_x
        return theta["s"] * r_g + v["s"] * g, {"s": jnp.sum(r_ds, axis=tuple(range(x.ndim - 1)))}

    def backward2(self, theta, x, H, g, exact=True):
        s = jnp.broadcast_to(theta["s"], x.shape).reshape(x.shape[0], -1)  # y is linear in x
        return s[:, :, None] * H * s[:, None, :]

    def per_example_grads(self, theta, x, g):
        return {"s": jnp.sum((g * x).reshape(x.shape[0], -1, x.shape[-1]), axis=1)}

    def hessian_diag(self, theta, x, H, g=None, exact=True):
        n, d = x.shape[0], x.shape[-1]
        xf = x.reshape(n, -1, d)
        Hd = jnp.diagonal(H.reshape(n, xf.shape[1], d, xf.shape[1], d), axis1=2, axis2=4)  # (N, p, q, d)
        return {"s": jnp.einsum("npj,npqj,nqj->j", xf, Hd, xf)}


@pytest.mark.parametrize("input_shape", [(4,), (2, 3)])
def test_a_users_layer_passes(input_shape, key):
    report = check_layer(Scale(), input_shape, key)
    assert report.ok, str(report)
    assert set(report.not_checked) == {"per_example_hessian_diag", "hessian_block", "hessian_block (GGN)"}
    assert {"backward (params)", "backward2", "per_example_grads", "hessian_diag"} <= set(report.pieces)


# --- float64 whatever the global setting ----------------------------------------------------------
def test_float64_even_when_x64_is_off(key):
    with jax.enable_x64(False):
        report = check_layer(LayerNorm(), (4,), key)
        assert not jax.config.jax_enable_x64
    assert jax.config.jax_enable_x64
    assert report.ok and max(r.max_rel_err for r in report.rows) < 1e-12  # float32 would be ~1e-7


def test_legacy_uint32_key_and_other_batches():
    assert check_layer(Dense(2), (3,), jax.random.PRNGKey(0), batch=1).ok
    assert check_layer(LayerNorm(), (3,), jax.random.PRNGKey(1), batch=4, rtol=1e-12).ok


# --- bad arguments ---------------------------------------------------------------------------------
class NoBackward:
    has_params = False

    def init(self, key, in_shape, dtype):
        return None, in_shape

    def forward(self, theta, x):
        return x, None


class NoHasParams(NoBackward):
    has_params = None

    def backward(self, theta, cache, g):
        return g, None


class ShapeLiar(NoHasParams):
    has_params = False

    def init(self, key, in_shape, dtype):
        return None, (7,)


class InitWithoutShape(NoHasParams):
    has_params = False

    def init(self, key, in_shape, dtype):
        return None


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (
            (Dense, (4,)),
            {},
            TypeError,
            r"layer must be a layer instance such as fb.layers.Dense\(3\); got the class",
        ),
        (("dense", (4,)), {}, TypeError, r"has no method 'init': add init\(key, in_shape, dtype\)"),
        ((NoBackward(), (4,)), {}, TypeError, r"has no method 'backward': add backward\(theta, cache, g\)"),
        ((NoHasParams(), (4,)), {}, TypeError, "needs a bool class attribute has_params"),
        ((Dense(3), 4), {}, TypeError, r"input_shape must be a tuple of positive ints.*got 4 \(int\)"),
        ((Dense(3), (0,)), {}, ValueError, r"check_layer input_shape\[0\] must be an integer from 1"),
        ((Dense(3), (2.5,)), {}, TypeError, r"check_layer input_shape\[0\] must be an integer"),
        ((Dense(3), (4,)), {"batch": 0}, ValueError, "check_layer batch must be an integer from 1"),
        ((Dense(3), (4,)), {"batch": 2.0}, TypeError, "check_layer batch must be an integer"),
        ((Dense(3), (4,)), {"rtol": 0.0}, ValueError, "check_layer rtol"),
        ((Dense(3), (4,)), {"rtol": "tight"}, TypeError, "check_layer rtol"),
        ((InitWithoutShape(), (4,)), {}, TypeError, r"init must return \(theta, out_shape\).*got NoneType"),
        ((Dense(3), (2, 3)), {}, ValueError, r"Dense takes one flat vector per example"),
        ((LayerNorm(), (4, 1)), {}, ValueError, "LayerNorm needs at least 2 features on the last axis"),
        (
            (ShapeLiar(), (4,)),
            {},
            ValueError,
            r"forward returned y of shape \(3, 4\).*init said the output shape is \(7,\)",
        ),
    ],
    ids=lambda a: None,
)
def test_bad_arguments(args, kwargs, error, match, key):
    with pytest.raises(error, match=match):
        check_layer(*args, key, **kwargs)


def test_bad_key():
    with pytest.raises(TypeError, match="check_layer key must be a JAX PRNG key"):
        check_layer(Dense(3), (4,), 0)
    with pytest.raises(ValueError, match=r"check_layer key must be one JAX PRNG key.*of shape \(3,\)"):
        check_layer(Dense(3), (4,), jax.random.split(jax.random.key(0), 3))


# --- the docstring examples (until fb.check_layer and fb.layers.LayerNorm are in the package) --------
@pytest.mark.parametrize("obj", [check_layer, LayerNorm], ids=["check_layer", "LayerNorm"])
def test_docstring_examples_run(obj, monkeypatch):
    monkeypatch.setattr(fb, "check_layer", check_layer, raising=False)
    monkeypatch.setattr(fb.layers, "LayerNorm", LayerNorm, raising=False)
    monkeypatch.setattr(fb.layers, "Dense", Dense, raising=False)
    (test,) = [t for t in doctest.DocTestFinder().find(obj, obj.__name__) if t.examples][:1]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    test.globs = {"jax": jax, "jnp": jnp, "fb": fb}
    out = []
    assert runner.run(test, out=out.append).failed == 0, "".join(out)


# --- every row sees a 1e-7 relative error in the method it checks ---------------------------------
def _off_by_1e7(cls, method: str):
    """A subclass of ``cls`` whose ``method`` scales its result (``forward_r``: ``R{y}``) by ``1 + 1e-7``."""
    original = getattr(cls, method)

    def wrong(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        bump = jax.tree.map(lambda a: a * (1 + 1e-7), out[0] if method == "forward_r" else out)
        return (bump, out[1]) if method == "forward_r" else bump

    return type(f"Wrong_{method}", (cls,), {method: wrong})


ROWS_OF = {
    "backward": ("backward (input)", "backward (params)"),
    "forward_r": ("forward_r", "forward_r (fixed input)"),
    "backward_r": ("backward_r", "backward_r (fixed input)"),
    "backward2": ("backward2", "backward2 (GGN)"),
    "per_example_grads": ("per_example_grads",),
    "hessian_diag": ("hessian_diag",),
    "per_example_hessian_diag": ("per_example_hessian_diag",),
    "hessian_block": ("hessian_block", "hessian_block (GGN)"),
    "jacobian_gram": ("jacobian_gram",),
}


@pytest.mark.parametrize(
    "method",
    [
        m if m in ("backward", "backward2", "hessian_block") else pytest.param(m, marks=pytest.mark.sweep)
        for m in ROWS_OF
    ],
)
def test_each_row_sees_a_tiny_error_in_its_method(method, key):
    report = check_layer(_off_by_1e7(Dense, method)(2), (3,), key)
    # backward_r's reference is the tangent of backward, so a wrong backward shows there too
    also = ROWS_OF["backward_r"] if method == "backward" else ()
    assert set(report.failed) == {*ROWS_OF[method], *also}, str(report)
