"""Bad inputs to curvature, spectra, Jacobians and the second-order optimizers: one case a row.

Each case is ``(call, exception type, message regex)``: the call must raise that exception from
fbackprop's own code (the innermost frame is in the package, not in JAX or NumPy), with a message
that names the argument, what was expected and what came. Add a row with every new public function.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb

NET = fb.mlp([2, 3, 1], activation="tanh")
P = NET.init(jax.random.key(0))
X = np.linspace(-1.0, 1.0, 8).reshape(4, 2)
Y = np.array([[0.1], [0.2], [-0.3], [0.4]])
APPLY = NET.apply
KEY = jax.random.key(1)
HVP = fb.hvp(NET, "squared_error")
MATVEC = lambda v: HVP(P, X, Y, v)  # noqa: E731


def with_nan(a, where=(0, 0)):
    a = np.array(a, dtype=np.float64)
    a[where] = np.nan
    return a


P_NAN = ({"W": with_nan(P[0]["W"], (1, 0)), "b": P[0]["b"]}, P[1])
LM = fb.levenberg_marquardt
ALT = r"fb\.least_squares\(residual, params\)"

CASES = [
    # --- levenberg_marquardt: counts -------------------------------------------------------------
    (
        "lm chunk_size=0",
        lambda: LM(NET, P, X, Y, chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1 to inf; got 0",
    ),
    (
        "lm chunk_size=2.5",
        lambda: LM(NET, P, X, Y, chunk_size=2.5),
        TypeError,
        r"chunk_size must be an integer; got 2\.5 \(float\)",
    ),
    (
        "lm max_steps=0",
        lambda: LM(NET, P, X, Y, max_steps=0),
        ValueError,
        r"max_steps must be an integer from 1 to inf; got 0",
    ),
    (
        "lm max_steps=2.0",
        lambda: LM(NET, P, X, Y, max_steps=2.0),
        TypeError,
        r"max_steps must be an integer; got 2\.0",
    ),
    (
        "lm max_fail=0",
        lambda: LM(NET, P, X, Y, max_fail=0),
        ValueError,
        r"max_fail must be an integer from 1 to inf; got 0",
    ),
    (
        "lm cg_maxiter=0",
        lambda: LM(NET, P, X, Y, solver="cg", cg_maxiter=0),
        ValueError,
        r"cg_maxiter must be an integer from 1 to inf; got 0",
    ),
    # --- levenberg_marquardt: reals ----------------------------------------------------------------
    (
        "lm mu_dec=10",
        lambda: LM(NET, P, X, Y, mu_dec=10, mu_inc=0.1),
        ValueError,
        r"mu_dec must lie in \(0\.0, 1\.0\) \(it multiplies mu after an accepted step\); got 10\.0",
    ),
    (
        "lm mu_inc=0.1",
        lambda: LM(NET, P, X, Y, mu_inc=0.1),
        ValueError,
        r"mu_inc must lie in \(1\.0, inf\) \(it multiplies mu after a rejected step\); got 0\.1",
    ),
    ("lm mu=0", lambda: LM(NET, P, X, Y, mu=0.0), ValueError, r"mu must lie in \(0\.0, inf\]; got 0\.0"),
    (
        "lm mu=nan",
        lambda: LM(NET, P, X, Y, mu=float("nan")),
        ValueError,
        r"mu must be a finite number; got nan",
    ),
    (
        "lm mu='big'",
        lambda: LM(NET, P, X, Y, mu="big"),
        TypeError,
        r"mu must be a real number; got 'big' \(str\)",
    ),
    (
        "lm mu > mu_max",
        lambda: LM(NET, P, X, Y, mu=1.0, mu_max=1e-3),
        ValueError,
        r"mu must not exceed mu_max .*got mu=1\.0, mu_max=0\.001",
    ),
    (
        "lm goal=-1",
        lambda: LM(NET, P, X, Y, goal=-1),
        ValueError,
        r"goal must lie in \[0\.0, inf\]; got -1\.0",
    ),
    ("lm goal=None", lambda: LM(NET, P, X, Y, goal=None), TypeError, r"goal must be a real number; got None"),
    (
        "lm min_grad=-1e-3",
        lambda: LM(NET, P, X, Y, min_grad=-1e-3),
        ValueError,
        r"min_grad must lie in \[0\.0, inf\]",
    ),
    (
        "lm cg_tol=-1",
        lambda: LM(NET, P, X, Y, cg_tol=-1.0),
        ValueError,
        r"cg_tol must lie in \[0\.0, inf\]; got -1\.0",
    ),
    # --- levenberg_marquardt: names, flags, data ---------------------------------------------------
    (
        "lm solver='qr'",
        lambda: LM(NET, P, X, Y, solver="qr"),
        ValueError,
        r"solver must be one of \['dense', 'accumulate', 'cg', 'dual', 'auto'\]; got 'qr'",
    ),
    (
        "lm damping='fletcher'",
        lambda: LM(NET, P, X, Y, damping="fletcher"),
        ValueError,
        r"damping must be one of \['marquardt', 'nielsen', 'trust_region'\]; got 'fletcher'",
    ),
    (
        "lm scaling='diag'",
        lambda: LM(NET, P, X, Y, scaling="diag"),
        ValueError,
        r"scaling must be one of \['identity', 'marquardt'\]; got 'diag'",
    ),
    (
        "lm curvature='fisher'",
        lambda: LM(NET, P, X, Y, curvature="fisher"),
        ValueError,
        r"curvature must be one of \['ggn', 'hessian'\]; got 'fisher'",
    ),
    (
        "lm hessian with cg",
        lambda: LM(NET, P, X, Y, curvature="hessian", solver="cg"),
        ValueError,
        r"solver must be 'dense' or 'auto'; got 'cg'",
    ),
    (
        "lm data_parallel='yes'",
        lambda: LM(NET, P, X, Y, data_parallel="yes"),
        TypeError,
        r"data_parallel must be True or False; got 'yes'",
    ),
    (
        "lm val=(x,)",
        lambda: LM(NET, P, X, Y, val=(X,)),
        TypeError,
        r"val must be a pair \(x_val, y_val\) .*; got a tuple of length 1",
    ),
    (
        "lm val=x",
        lambda: LM(NET, P, X, Y, val=X),
        TypeError,
        r"val must be a pair \(x_val, y_val\) .*; got an array of shape \(4, 2\)",
    ),
    ("lm val rows", lambda: LM(NET, P, X, Y, val=(X, Y[:3])), ValueError, r"val: y has 3 rows but x has 4"),
    (
        "lm val nan",
        lambda: LM(NET, P, X, Y, val=(with_nan(X), Y)),
        ValueError,
        r"val: x holds 1 non-finite value",
    ),
    (
        "lm x nan",
        lambda: LM(NET, P, with_nan(X, (2, 1)), Y),
        ValueError,
        r"x holds 1 non-finite value \(the first, nan, at index \(2, 1\)\)",
    ),
    (
        "lm params nan",
        lambda: LM(NET, P_NAN, X, Y),
        ValueError,
        r"params\[0\]\['W'\] holds 1 non-finite value",
    ),
    (
        "lm apply",
        lambda: LM(APPLY, P, X, Y),
        TypeError,
        r"fb\.levenberg_marquardt is hand-written .*got <bound method.*" + ALT,
    ),
    # --- newton, gauss_newton, hessian_free ------------------------------------------------------------
    ("newton apply", lambda: fb.newton(APPLY, P, X, Y), TypeError, r"^fb\.newton is hand-written .*" + ALT),
    (
        "newton solver",
        lambda: fb.newton(NET, P, X, Y, solver="cg"),
        TypeError,
        r"fb\.newton always uses the exact Hessian .*no solver option \(got solver='cg'\)",
    ),
    (
        "gn apply",
        lambda: fb.gauss_newton(APPLY, P, X, Y),
        TypeError,
        r"^fb\.gauss_newton is hand-written .*" + ALT,
    ),
    (
        "gn max_steps=0",
        lambda: fb.gauss_newton(NET, P, X, Y, max_steps=0),
        ValueError,
        r"max_steps must be an integer",
    ),
    (
        "gn armijo=1",
        lambda: fb.gauss_newton(NET, P, X, Y, armijo=1.0),
        ValueError,
        r"armijo must lie in \(0\.0, 1\.0\)",
    ),
    (
        "gn max_halvings=-1",
        lambda: fb.gauss_newton(NET, P, X, Y, max_halvings=-1),
        ValueError,
        r"max_halvings must be an integer from 0 to inf; got -1",
    ),
    ("gn x nan", lambda: fb.gauss_newton(NET, P, with_nan(X), Y), ValueError, r"x holds 1 non-finite value"),
    (
        "hf apply",
        lambda: fb.hessian_free(APPLY, P, X, Y),
        TypeError,
        r"^fb\.hessian_free is hand-written .*" + ALT,
    ),
    (
        "hf cg_iters=0",
        lambda: fb.hessian_free(NET, P, X, Y, cg_iters=0),
        ValueError,
        r"cg_iters must be an integer from 1 to inf; got 0",
    ),
    (
        "hf batch_size=5",
        lambda: fb.hessian_free(NET, P, X, Y, batch_size=5),
        ValueError,
        r"batch_size must be an integer from 1 to 4; got 5",
    ),
    (
        "hf lam=0",
        lambda: fb.hessian_free(NET, P, X, Y, lam=0.0),
        ValueError,
        r"lam must lie in \(0\.0, inf\]; got 0\.0",
    ),
    (
        "hf decay=1.5",
        lambda: fb.hessian_free(NET, P, X, Y, decay=1.5),
        ValueError,
        r"decay must lie in \[0\.0, 1\.0\]",
    ),
    (
        "hf key=0",
        lambda: fb.hessian_free(NET, P, X, Y, key=0),
        TypeError,
        r"key must be a JAX PRNG key such as jax\.random\.key\(0\); got 0",
    ),
    (
        "hf precondition='yes'",
        lambda: fb.hessian_free(NET, P, X, Y, precondition="yes"),
        TypeError,
        r"precondition must be True or False; got 'yes'",
    ),
    # --- least_squares ---------------------------------------------------------------------------------
    ("ls residual not callable", lambda: fb.least_squares(X, P), TypeError, r"residual must be a callable"),
    (
        "ls integer residual",
        lambda: fb.least_squares(lambda p: jnp.array([1, 2]), P),
        TypeError,
        r"must return a floating array; it returned int",
    ),
    (
        "ls tuple residual",
        lambda: fb.least_squares(lambda p: (p[0]["b"], p[1]["b"]), P),
        TypeError,
        r"residual\(params\) must return one array; it returned PyTreeDef",
    ),
    (
        "ls empty residual",
        lambda: fb.least_squares(lambda p: p[0]["b"][:0], P),
        ValueError,
        r"returned an empty array of shape \(0,\)",
    ),
    (
        "ls integer params",
        lambda: fb.least_squares(lambda p: p * 1.0, jnp.arange(3)),
        TypeError,
        r"params has dtype int\d+; parameters must be real floating point",
    ),
    (
        "ls params nan",
        lambda: fb.least_squares(lambda p: p, with_nan(np.ones(3), 1)),
        ValueError,
        r"params holds 1 non-finite value \(the first, nan, at index \(1,\)\)",
    ),
    (
        "ls mu_dec=2",
        lambda: fb.least_squares(lambda p: p, np.ones(3), mu_dec=2.0),
        ValueError,
        r"mu_dec must lie in \(0\.0, 1\.0\)",
    ),
    (
        "ls max_steps=0",
        lambda: fb.least_squares(lambda p: p, np.ones(3), max_steps=0),
        ValueError,
        r"max_steps must be an integer from 1",
    ),
    # --- spectra -------------------------------------------------------------------------------------
    (
        "lanczos num_iter=0",
        lambda: fb.lanczos(MATVEC, P, KEY, 0),
        ValueError,
        r"num_iter must be an integer from 1 to inf; got 0",
    ),
    (
        "lanczos num_iter=2.5",
        lambda: fb.lanczos(MATVEC, P, KEY, 2.5),
        TypeError,
        r"num_iter must be an integer; got 2\.5",
    ),
    (
        "lanczos flat matvec",
        lambda: fb.lanczos(lambda v: fb.flatten(MATVEC(v))[0], P, KEY, 5),
        ValueError,
        r"matvec\(v\) must return a pytree shaped like `like` .*; "
        r"it returned PyTreeDef\(\*\) with leaves \[\(13,\) float64\]",
    ),
    (
        "lanczos matvec wrong leaf",
        lambda: fb.lanczos(lambda v: (v[0], {"W": v[1]["W"].T, "b": v[1]["b"]}), P, KEY, 5),
        ValueError,
        r"it returned .* with leaves \[.*\(3, 1\) float64",
    ),
    (
        "lanczos matvec not callable",
        lambda: fb.lanczos(P, P, KEY, 5),
        TypeError,
        r"matvec must be a callable",
    ),
    (
        "lanczos key=0",
        lambda: fb.lanczos(MATVEC, P, 0, 5),
        TypeError,
        r"key must be a JAX PRNG key .*; got 0",
    ),
    (
        "lanczos integer like",
        lambda: fb.lanczos(lambda v: v, jnp.arange(3), KEY, 2),
        TypeError,
        r"like has dtype int\d+; parameters must be real floating point",
    ),
    (
        "eigenvalues k=0",
        lambda: fb.eigenvalues(MATVEC, P, KEY, k=0),
        ValueError,
        r"k must be an integer from 1 to 13; got 0",
    ),
    (
        "eigenvalues k=2.0",
        lambda: fb.eigenvalues(MATVEC, P, KEY, k=2.0),
        TypeError,
        r"k must be an integer; got 2\.0",
    ),
    (
        "eigenvalues which",
        lambda: fb.eigenvalues(MATVEC, P, KEY, which="largest"),
        ValueError,
        r"which must be one of \['top', 'bottom'\]; got 'largest'",
    ),
    (
        "eigenvalues num_iter < k",
        lambda: fb.eigenvalues(MATVEC, P, KEY, k=3, num_iter=2),
        ValueError,
        r"num_iter must be an integer from 3 to inf; got 2",
    ),
    (
        "eigenvalues flat matvec",
        lambda: fb.eigenvalues(lambda v: fb.flatten(MATVEC(v))[0], P, KEY),
        ValueError,
        r"matvec\(v\) must return a pytree shaped like `like`",
    ),
    (
        "power_iteration num_iter=0",
        lambda: fb.power_iteration(MATVEC, P, KEY, num_iter=0),
        ValueError,
        r"num_iter must be an integer from 1 to inf; got 0",
    ),
    (
        "power_iteration flat matvec",
        lambda: fb.power_iteration(lambda v: fb.flatten(MATVEC(v))[0], P, KEY),
        ValueError,
        r"matvec\(v\) must return a pytree shaped like `like`",
    ),
    (
        "hutchinson_trace n_samples=1",
        lambda: fb.hutchinson_trace(MATVEC, P, KEY, n_samples=1),
        ValueError,
        r"n_samples must be an integer from 2 to inf; got 1",
    ),
    (
        "hutchinson_trace n_samples=0",
        lambda: fb.hutchinson_trace(MATVEC, P, KEY, n_samples=0),
        ValueError,
        r"n_samples must be an integer from 2 to inf; got 0",
    ),
    (
        "hutchinson_diag n_samples=0",
        lambda: fb.hutchinson_diag(MATVEC, P, KEY, n_samples=0),
        ValueError,
        r"n_samples must be an integer from 1 to inf; got 0",
    ),
    (
        "hutchinson_diag key=0",
        lambda: fb.hutchinson_diag(MATVEC, P, 0),
        TypeError,
        r"key must be a JAX PRNG key",
    ),
    # --- curvature and Jacobian factories (refused when built, before any call) -------------------
    (
        "hessian_diag chunk_size=0",
        lambda: fb.hessian_diag(NET, "squared_error", chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1 to inf; got 0",
    ),
    (
        "hessian_diag chunk_size=1.5",
        lambda: fb.hessian_diag(NET, "squared_error", chunk_size=1.5),
        TypeError,
        r"chunk_size must be an integer; got 1\.5",
    ),
    (
        "hessian_diag per_example='yes'",
        lambda: fb.hessian_diag(NET, "squared_error", per_example="yes"),
        TypeError,
        r"per_example must be True or False; got 'yes'",
    ),
    (
        "ggn_diag chunk_size=0",
        lambda: fb.ggn_diag(NET, "squared_error", chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1",
    ),
    (
        "hessian_blocks chunk_size=0",
        lambda: fb.hessian_blocks(NET, "squared_error", chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1",
    ),
    (
        "hessian_blocks exact='no'",
        lambda: fb.hessian_blocks(NET, "squared_error", exact="no"),
        TypeError,
        r"exact must be True or False; got 'no'",
    ),
    (
        "hvp method='reverse'",
        lambda: fb.hvp(NET, "squared_error", method="reverse"),
        ValueError,
        r"method must be one of \['autodiff', 'backprop'\]; got 'reverse'",
    ),
    (
        "hvp method=3",
        lambda: fb.hvp(NET, "squared_error", method=3),
        ValueError,
        r"method must be one of .*; got 3",
    ),
    (
        "hvp backprop apply",
        lambda: fb.hvp(APPLY, "squared_error", method="backprop"),
        TypeError,
        r'fb\.hvp\(net, loss, method="backprop"\) is hand-written .*got <bound method.*'
        r'use fb\.hvp\(apply, loss, method="autodiff"\)',
    ),
    (
        "jacobian backprop apply",
        lambda: fb.jacobian(APPLY),
        TypeError,
        r'got <bound method.*use fb\.jacobian\(apply, method="autodiff"\)',
    ),
    (
        "jacobian method",
        lambda: fb.jacobian(NET, "forward"),
        ValueError,
        r"method must be one of \['backprop', 'autodiff'\]; got 'forward'",
    ),
    (
        "jacobian_gram backprop apply",
        lambda: fb.jacobian_gram(APPLY),
        TypeError,
        r'use fb\.jacobian_gram\(apply, method="autodiff"\)',
    ),
    (
        "jacobian_gram method",
        lambda: fb.jacobian_gram(NET, "fwd"),
        ValueError,
        r"method must be one of .*; got 'fwd'",
    ),
    (
        "hessian_diag apply",
        lambda: fb.hessian_diag(APPLY, "squared_error"),
        TypeError,
        r"fb\.hessian_diag is hand-written .*use jnp\.diag\(fb\.hessian\(apply, loss\)\(params, x, y\)\)",
    ),
    (
        "ggn_diag apply",
        lambda: fb.ggn_diag(APPLY, "squared_error"),
        TypeError,
        r"fb\.ggn_diag is hand-written .*use jnp\.diag\(fb\.ggn\(apply, loss\)\(params, x, y\)\)",
    ),
    (
        "hessian_blocks apply",
        lambda: fb.hessian_blocks(APPLY, "squared_error"),
        TypeError,
        r"fb\.hessian_blocks is hand-written .*use fb\.hessian\(apply, loss\)",
    ),
    (
        "fisher_vp kind",
        lambda: fb.fisher_vp(NET, "squared_error", kind="true"),
        ValueError,
        r"kind must be one of \['empirical', 'mc'\]; got 'true'",
    ),
    (
        "fisher_vp n_samples=0",
        lambda: fb.fisher_vp(NET, "squared_error", kind="mc", n_samples=0),
        ValueError,
        r"n_samples must be an integer from 1 to inf; got 0",
    ),
    (
        "fisher_vp mc key=0",
        lambda: fb.fisher_vp(NET, "squared_error", kind="mc")(P, X, Y, P, 0),
        TypeError,
        r"key must be a JAX PRNG key such as jax\.random\.key\(0\); got ",
    ),
    (
        "as_matrix of params",
        lambda: fb.as_matrix(P[0]["b"]),
        ValueError,
        r"as_matrix takes what fb\.jacobian returns: .*got leaf shapes \[\(3,\)\]",
    ),
    (
        "auto_solver n_rows=0",
        lambda: fb.optim.auto_solver(0, 10),
        ValueError,
        r"n_rows must be an integer from 1",
    ),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_input_is_refused_by_fbackprop_naming_it(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    innermost = str(info.traceback[-1].path)
    assert f"{os.sep}fbackprop{os.sep}" in innermost, (
        f"raised from {innermost}, not from fbackprop's own code"
    )


def test_the_cases_have_distinct_names():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))
