"""Any model ``apply(params, x)`` in the second-order optimizers: the ``Autodiff`` layer's passes
against autodiff, and each optimizer on a Flax and an Equinox model matching the same network's
fbackprop run (float64)."""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb

WIDTH = 5


class FlaxMLP(nn.Module):
    n_out: int = 1

    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(WIDTH)(x))  # Dense_0
        return nn.Dense(self.n_out)(h)  # Dense_1


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _flax(x, n_out):
    model = FlaxMLP(n_out)
    variables = _f64(model.init(jax.random.key(0), x))
    d = variables["params"]
    params = tuple({"W": d[k]["kernel"].T, "b": d[k]["bias"]} for k in ("Dense_0", "Dense_1"))
    return model.apply, variables, params


EQX = {}


def _equinox(x, n_out):
    key = (x.shape[1], n_out)
    if key not in EQX:  # one apply per shape, so that the compiled program is cached on it
        mlp = eqx.nn.MLP(x.shape[1], n_out, WIDTH, 1, activation=jnp.tanh, key=jax.random.key(1))
        arrays, static = eqx.partition(mlp, eqx.is_array)
        EQX[key] = (lambda p, xx: jax.vmap(eqx.combine(p, static))(xx), _f64(arrays))
    apply, arrays = EQX[key]
    params = tuple({"W": layer.weight, "b": layer.bias} for layer in arrays.layers)
    return apply, arrays, params


def _regression(n=40):
    x = jax.random.normal(jax.random.key(2), (n, 2))
    return x, jnp.sin(x[:, :1]) * x[:, 1:]


def _classification(n=40):
    x = jax.random.normal(jax.random.key(3), (n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(jnp.int32) + (x[:, 0] > 1).astype(jnp.int32)


RUNS = {
    "lm dense": lambda m, p, x, y: fb.levenberg_marquardt(m, p, x, y, solver="dense", max_steps=12),
    "lm accumulate": lambda m, p, x, y: fb.levenberg_marquardt(
        m, p, x, y, solver="accumulate", chunk_size=16, max_steps=12
    ),
    "lm cg marquardt": lambda m, p, x, y: fb.levenberg_marquardt(
        m, p, x, y, solver="cg", scaling="marquardt", cg_tol=1e-15, mu=1e-1, max_steps=12
    ),
    "lm dual": lambda m, p, x, y: fb.levenberg_marquardt(
        m, p, x[:8], y[:8], solver="dual", mu=1e-1, max_steps=12
    ),
    "lm val": lambda m, p, x, y: fb.levenberg_marquardt(
        m, p, x[:30], y[:30], val=(x[30:], y[30:]), max_fail=2
    ),
    "lm cross-entropy": lambda m, p, x, y: fb.levenberg_marquardt(
        m, p, x, y, loss="cross_entropy", max_steps=12
    ),
    "gauss_newton": lambda m, p, x, y: fb.gauss_newton(m, p, x, y, max_steps=3),
    "newton": lambda m, p, x, y: fb.newton(m, p, x, y, max_steps=8),
    "hessian_free": lambda m, p, x, y: fb.hessian_free(
        m, p, x, y, max_steps=5, cg_iters=10, precondition=True
    ),
}
FAST = {("flax", "lm dense"), ("equinox", "gauss_newton")}


def _cases():
    for lib in ("flax", "equinox"):
        for name in RUNS:
            marks = () if (lib, name) in FAST else (pytest.mark.slow,)
            yield pytest.param(lib, name, marks=marks, id=f"{lib}-{name}")


@pytest.mark.parametrize("lib, name", list(_cases()))
def test_each_optimizer_on_a_flax_or_equinox_model_matches_the_fbackprop_network(lib, name):
    x, y = _classification() if name == "lm cross-entropy" else _regression()
    n_out = 3 if name == "lm cross-entropy" else 1
    apply, model_params, params = (_flax if lib == "flax" else _equinox)(x, n_out)
    net = fb.mlp([2, WIDTH, n_out], activation="tanh")
    ours, theirs = RUNS[name](net, params, x, y), RUNS[name](apply, model_params, x, y)
    assert int(ours.status) == int(theirs.status) and int(ours.iterations) == int(theirs.iterations)
    np.testing.assert_array_equal(ours.history.accepted, theirs.history.accepted)
    # Gauss-Newton's undamped solve has cond(G) ~ 1e8 on this net: rounding of 1e-16 between the
    # hand-written and the autodiff Jacobian moves its step by ~1e-8. The damped solves are tighter.
    rtol = 1e-6 if name == "gauss_newton" else 1e-9
    np.testing.assert_allclose(theirs.history.loss, ours.history.loss, rtol=rtol, atol=1e-15)
    assert jax.tree.structure(theirs.params) == jax.tree.structure(model_params)
    k = int(ours.iterations)
    assert float(ours.history.loss[k]) < float(ours.history.loss[0])


def test_the_autodiff_layer_passes_every_check_layer_piece():
    layer = fb.layers.Autodiff.of(
        lambda q, x: jnp.tanh(x @ q["w"]) * q["s"], {"w": jnp.ones((3, 2)), "s": jnp.ones(2)}
    )
    report = fb.check_layer(layer, (3,), jax.random.key(0))
    assert report.ok and len(report.rows) >= 12


def test_a_model_that_is_neither_network_nor_callable_is_refused():
    x, y = _regression()
    with pytest.raises(
        TypeError, match=r"fb\.levenberg_marquardt needs an fbackprop Network .* or an apply\(params, x\)"
    ):
        fb.levenberg_marquardt("mlp", {}, x, y)
