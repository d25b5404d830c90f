"""Bad inputs to curvature (``fb.hvp``, ``fb.hessian_diag``, ``fb.ggn_diag``, ``fb.hessian_blocks``,
``fb.fisher_vp``), Jacobians (``fb.jacobian``, ``fb.jacobian_gram``, ``fb.as_matrix``) and spectra
(``fb.lanczos``, ``fb.eigenvalues``, ``fb.power_iteration``, ``fb.hutchinson_*``): one row a case
(``cases.py``: the runner, how to add one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import fbackprop as fb

from .cases import Case, check, table

NET = fb.mlp([2, 3, 1], activation="tanh")
P = NET.init(jax.random.key(0))
X = np.linspace(-1.0, 1.0, 8).reshape(4, 2)
Y = np.array([[0.1], [0.2], [-0.3], [0.4]])
APPLY = NET.apply
KEY = jax.random.key(1)
HVP = fb.hvp(NET, "squared_error")
MATVEC = lambda v: HVP(P, X, Y, v)
INTS = jnp.arange(3)

CASES: list[Case] = []

# --- spectra -------------------------------------------------------------------------------------
CASES += [
    Case(
        "lanczos num_iter=0",
        lambda: fb.lanczos(MATVEC, P, KEY, 0),
        ValueError,
        r"num_iter must be an integer from 1 to inf; got 0",
    ),
    Case(
        "lanczos num_iter=2.5",
        lambda: fb.lanczos(MATVEC, P, KEY, 2.5),
        TypeError,
        r"num_iter must be an integer; got 2\.5",
    ),
    Case(
        "lanczos flat matvec",
        lambda: fb.lanczos(lambda v: fb.flatten(MATVEC(v))[0], P, KEY, 5),
        ValueError,
        r"matvec\(v\) must return a pytree shaped like `like` .*; "
        r"it returned PyTreeDef\(\*\) with leaves \[\(13,\) float64\]",
    ),
    Case(
        "lanczos matvec wrong leaf",
        lambda: fb.lanczos(lambda v: (v[0], {"W": v[1]["W"].T, "b": v[1]["b"]}), P, KEY, 5),
        ValueError,
        r"it returned .* with leaves \[.*\(3, 1\) float64",
    ),
    Case(
        "lanczos matvec not callable",
        lambda: fb.lanczos(P, P, KEY, 5),
        TypeError,
        r"matvec must be a callable",
    ),
    Case(
        "lanczos key=0",
        lambda: fb.lanczos(MATVEC, P, 0, 5),
        TypeError,
        r"key must be a JAX PRNG key .*; got 0",
    ),
    Case(
        "lanczos integer like",
        lambda: fb.lanczos(lambda v: v, INTS, KEY, 2),
        TypeError,
        r"like has dtype int\d+; parameters must be real floating point",
    ),
    Case(
        "eigenvalues k=0",
        lambda: fb.eigenvalues(MATVEC, P, KEY, k=0),
        ValueError,
        r"k must be an integer from 1 to 13; got 0",
    ),
    Case(
        "eigenvalues k=2.0",
        lambda: fb.eigenvalues(MATVEC, P, KEY, k=2.0),
        TypeError,
        r"k must be an integer; got 2\.0",
    ),
    Case(
        "eigenvalues which",
        lambda: fb.eigenvalues(MATVEC, P, KEY, which="largest"),
        ValueError,
        r"which must be one of \['top', 'bottom'\]; got 'largest'",
    ),
    Case(
        "eigenvalues num_iter < k",
        lambda: fb.eigenvalues(MATVEC, P, KEY, k=3, num_iter=2),
        ValueError,
        r"num_iter must be an integer from 3 to inf; got 2",
    ),
    Case(
        "eigenvalues flat matvec",
        lambda: fb.eigenvalues(lambda v: fb.flatten(MATVEC(v))[0], P, KEY),
        ValueError,
        r"matvec\(v\) must return a pytree shaped like `like`",
    ),
    Case(
        "power_iteration num_iter=0",
        lambda: fb.power_iteration(MATVEC, P, KEY, num_iter=0),
        ValueError,
        r"num_iter must be an integer from 1 to inf; got 0",
    ),
    Case(
        "power_iteration flat matvec",
        lambda: fb.power_iteration(lambda v: fb.flatten(MATVEC(v))[0], P, KEY),
        ValueError,
        r"matvec\(v\) must return a pytree shaped like `like`",
    ),
    Case(
        "hutchinson_trace n_samples=1",
        lambda: fb.hutchinson_trace(MATVEC, P, KEY, n_samples=1),
        ValueError,
        r"n_samples must be an integer from 2 to inf; got 1",
    ),
    Case(
        "hutchinson_trace n_samples=0",
        lambda: fb.hutchinson_trace(MATVEC, P, KEY, n_samples=0),
        ValueError,
        r"n_samples must be an integer from 2 to inf; got 0",
    ),
    Case(
        "hutchinson_diag n_samples=0",
        lambda: fb.hutchinson_diag(MATVEC, P, KEY, n_samples=0),
        ValueError,
        r"n_samples must be an integer from 1 to inf; got 0",
    ),
    Case(
        "hutchinson_diag key=0",
        lambda: fb.hutchinson_diag(MATVEC, P, 0),
        TypeError,
        r"key must be a JAX PRNG key",
    ),
]

# --- curvature and Jacobian factories (refused when built, before any call) -------------------
CASES += [
    Case(
        "hessian_diag chunk_size=0",
        lambda: fb.hessian_diag(NET, "squared_error", chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1 to inf; got 0",
    ),
    Case(
        "hessian_diag chunk_size=1.5",
        lambda: fb.hessian_diag(NET, "squared_error", chunk_size=1.5),
        TypeError,
        r"chunk_size must be an integer; got 1\.5",
    ),
    Case(
        "hessian_diag per_example='yes'",
        lambda: fb.hessian_diag(NET, "squared_error", per_example="yes"),
        TypeError,
        r"per_example must be True or False; got 'yes'",
    ),
    Case(
        "ggn_diag chunk_size=0",
        lambda: fb.ggn_diag(NET, "squared_error", chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1",
    ),
    Case(
        "ggn_diag factored='yes'",
        lambda: fb.ggn_diag(NET, "squared_error", factored="yes"),
        TypeError,
        r"factored must be True or False; got 'yes'",
    ),
    Case(
        "hessian_blocks chunk_size=0",
        lambda: fb.hessian_blocks(NET, "squared_error", chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1",
    ),
    Case(
        "hessian_blocks exact='no'",
        lambda: fb.hessian_blocks(NET, "squared_error", exact="no"),
        TypeError,
        r"exact must be True or False; got 'no'",
    ),
    Case(
        "hvp method='reverse'",
        lambda: fb.hvp(NET, "squared_error", method="reverse"),
        ValueError,
        r"method must be one of \['autodiff', 'backprop'\]; got 'reverse'",
    ),
    Case(
        "hvp method=3",
        lambda: fb.hvp(NET, "squared_error", method=3),
        ValueError,
        r"method must be one of .*; got 3",
    ),
    Case(
        "hvp backprop apply",
        lambda: fb.hvp(APPLY, "squared_error", method="backprop"),
        TypeError,
        r'fb\.hvp\(net, loss, method="backprop"\) is hand-written .*got <bound method.*'
        r'use fb\.hvp\(apply, loss, method="autodiff"\)',
    ),
    Case(
        "jacobian backprop apply",
        lambda: fb.jacobian(APPLY),
        TypeError,
        r'got <bound method.*use fb\.jacobian\(apply, method="autodiff"\)',
    ),
    Case(
        "jacobian method",
        lambda: fb.jacobian(NET, "forward"),
        ValueError,
        r"method must be one of \['backprop', 'autodiff'\]; got 'forward'",
    ),
    Case(
        "jacobian_gram backprop apply",
        lambda: fb.jacobian_gram(APPLY),
        TypeError,
        r'use fb\.jacobian_gram\(apply, method="autodiff"\)',
    ),
    Case(
        "jacobian_gram method",
        lambda: fb.jacobian_gram(NET, "fwd"),
        ValueError,
        r"method must be one of .*; got 'fwd'",
    ),
    Case(
        "hessian_diag apply",
        lambda: fb.hessian_diag(APPLY, "squared_error"),
        TypeError,
        r"fb\.hessian_diag is hand-written .*use jnp\.diag\(fb\.hessian\(apply, loss\)\(params, x, y\)\)",
    ),
    Case(
        "ggn_diag apply",
        lambda: fb.ggn_diag(APPLY, "squared_error"),
        TypeError,
        r"fb\.ggn_diag is hand-written .*use jnp\.diag\(fb\.ggn\(apply, loss\)\(params, x, y\)\)",
    ),
    Case(
        "hessian_blocks apply",
        lambda: fb.hessian_blocks(APPLY, "squared_error"),
        TypeError,
        r"fb\.hessian_blocks is hand-written .*use fb\.hessian\(apply, loss\)",
    ),
    Case(
        "fisher_vp kind",
        lambda: fb.fisher_vp(NET, "squared_error", kind="true"),
        ValueError,
        r"kind must be one of \['empirical', 'mc'\]; got 'true'",
    ),
    Case(
        "fisher_vp n_samples=0",
        lambda: fb.fisher_vp(NET, "squared_error", kind="mc", n_samples=0),
        ValueError,
        r"n_samples must be an integer from 1 to inf; got 0",
    ),
    Case(
        "fisher_vp mc key=0",
        lambda: fb.fisher_vp(NET, "squared_error", kind="mc")(P, X, Y, P, 0),
        TypeError,
        r"key must be a JAX PRNG key such as jax\.random\.key\(0\); got ",
        values=True,
    ),
    Case(
        "as_matrix of params",
        lambda: fb.as_matrix(P[0]["b"]),
        ValueError,
        r"as_matrix takes what fb\.jacobian returns: .*got leaves \[\(3,\)\]",
    ),
]


# --- Kronecker factors -----------------------------------------------------------------------------
SE = fb.losses.get("squared_error")
NO_SQRT = fb.losses.Loss("no_sqrt", SE.value, SE.grad, SE.hessian, SE.hvp, SE.prepare, SE.sample)
NORMED = fb.serial(fb.layers.Dense(3), fb.layers.LayerNorm(), fb.layers.Dense(1), input_shape=(2,))
FACTORS = (fb.KFactors(np.eye(3), np.eye(3)), fb.KFactors(np.eye(4), np.eye(1)))
WRONG_B = (P[0], {"W": P[1]["W"], "b": np.zeros(2)})
CASES += [
    Case(
        "kfac_factors: a LayerNorm",
        lambda: fb.kfac_factors(NORMED, "squared_error"),
        TypeError,
        r"fb\.kfac_factors needs kfac_factors on every layer with parameters; layer 2 LayerNorm has none: "
        r"add LayerNorm\.kfac_factors\(theta, cache, G\) -> KFactors\(A, G\)",
    ),
    Case(
        "kfac_factors: kind='mc'",
        lambda: fb.kfac_factors(NET, "squared_error", kind="mc"),
        ValueError,
        r"kind must be one of \['exact', 'fisher', 'empirical'\]; got 'mc'",
    ),
    Case(
        "kfac_factors: an apply callable",
        lambda: fb.kfac_factors(APPLY, "squared_error"),
        TypeError,
        r"fb\.kfac_factors is hand-written over the network's layers and needs an fbackprop Network",
    ),
    Case(
        "kfac_factors: n_samples=0",
        lambda: fb.kfac_factors(NET, "squared_error", "fisher", n_samples=0),
        ValueError,
        r"n_samples must be an integer from 1 to inf; got 0",
    ),
    Case(
        "kfac_factors: a loss without hessian_sqrt",
        lambda: fb.kfac_factors(NET, NO_SQRT),
        TypeError,
        r"fb\.kfac_factors\(kind=\"exact\"\) needs the loss's hessian_sqrt .* loss 'no_sqrt' has none",
    ),
    Case(
        "ggn_diag factored: a loss without hessian_sqrt",
        lambda: fb.ggn_diag(NET, NO_SQRT, factored=True),
        TypeError,
        r"fb\.ggn_diag\(factored=True\) needs the loss's hessian_sqrt",
    ),
    Case(
        "kfac_factors fisher: no key",
        lambda: fb.kfac_factors(NET, "squared_error", "fisher")(P, X, Y),
        TypeError,
        r'kind="fisher" draws targets from the model: call it with a key, \(params, x, y, key\)',
    ),
    Case(
        "kfac_factors fisher: key=0",
        lambda: fb.kfac_factors(NET, "squared_error", "fisher")(P, X, Y, 0),
        TypeError,
        r"key must be a JAX PRNG key",
        values=True,
    ),
    Case(
        "kfac_vp: v of another tree",
        lambda: fb.kfac_vp(FACTORS, P[0]),
        ValueError,
        r"factors and v must have one entry per layer with parameters, in the same tree",
    ),
    Case(
        "kfac_vp: a layer of another size",
        lambda: fb.kfac_vp(FACTORS, WRONG_B),
        ValueError,
        r"a layer's tangent must be \{'W': \(1, \.\.\.\) with 3 entries a row, 'b': \(1,\)\} to match its "
        r"factors; got \{'W': \(1, 3\), 'b': \(2,\)\}",
    ),
    Case(
        "kfac_inverse_vp: damping=0",
        lambda: fb.kfac_inverse_vp(FACTORS, P, 0.0),
        ValueError,
        r"damping must lie in \(0\.0, inf\]; got 0\.0",
    ),
    Case(
        "kfac_inverse: damping='1'",
        lambda: fb.kfac_inverse(FACTORS, "1"),
        TypeError,
        r"damping must be a real number; got '1'",
    ),
    Case(
        "ekfac_inverse_vp: damping=-1",
        lambda: fb.ekfac_inverse_vp((), (), -1.0),
        ValueError,
        r"damping must lie in \(0\.0, inf\]; got -1\.0",
    ),
]


@table(CASES)
def test_bad_input(case, compiles):
    check(case, compiles)
