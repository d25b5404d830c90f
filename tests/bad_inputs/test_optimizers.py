"""Bad inputs to the second-order optimizers (``fb.levenberg_marquardt``, ``fb.newton``,
``fb.gauss_newton``, ``fb.hessian_free``, ``fb.least_squares``, ``fb.optim.auto_solver``): one row a
case (``cases.py``: the runner, how to add one).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import fbackprop as fb

from .cases import Case, check, table, with_nan

NET = fb.mlp([2, 3, 1], activation="tanh")
P = NET.init(jax.random.key(0))
X = np.linspace(-1.0, 1.0, 8).reshape(4, 2)
Y = np.array([[0.1], [0.2], [-0.3], [0.4]])
APPLY = NET.apply
P_NAN = ({"W": with_nan(P[0]["W"], (1, 0)), "b": P[0]["b"]}, P[1])
LM = fb.levenberg_marquardt
INTS = jnp.arange(3)
MODEL = r".*\(a Flax module's apply, an Equinox model's call\); got "

CASES: list[Case] = []

# --- levenberg_marquardt: counts -------------------------------------------------------------
CASES += [
    Case(
        "lm chunk_size=0",
        lambda: LM(NET, P, X, Y, chunk_size=0),
        ValueError,
        r"chunk_size must be an integer from 1 to inf; got 0",
    ),
    Case(
        "lm chunk_size=2.5",
        lambda: LM(NET, P, X, Y, chunk_size=2.5),
        TypeError,
        r"chunk_size must be an integer; got 2\.5 \(float\)",
    ),
    Case(
        "lm max_steps=0",
        lambda: LM(NET, P, X, Y, max_steps=0),
        ValueError,
        r"max_steps must be an integer from 1 to inf; got 0",
    ),
    Case(
        "lm max_steps=2.0",
        lambda: LM(NET, P, X, Y, max_steps=2.0),
        TypeError,
        r"max_steps must be an integer; got 2\.0",
    ),
    Case(
        "lm max_fail=0",
        lambda: LM(NET, P, X, Y, max_fail=0),
        ValueError,
        r"max_fail must be an integer from 1 to inf; got 0",
    ),
    Case(
        "lm cg_maxiter=0",
        lambda: LM(NET, P, X, Y, solver="cg", cg_maxiter=0),
        ValueError,
        r"cg_maxiter must be an integer from 1 to inf; got 0",
    ),
]

# --- levenberg_marquardt: reals ----------------------------------------------------------------
CASES += [
    Case(
        "lm mu_dec=10",
        lambda: LM(NET, P, X, Y, mu_dec=10, mu_inc=0.1),
        ValueError,
        r"mu_dec must lie in \(0\.0, 1\.0\) \(it multiplies mu after an accepted step\); got 10\.0",
    ),
    Case(
        "lm mu_inc=0.1",
        lambda: LM(NET, P, X, Y, mu_inc=0.1),
        ValueError,
        r"mu_inc must lie in \(1\.0, inf\) \(it multiplies mu after a rejected step\); got 0\.1",
    ),
    Case("lm mu=0", lambda: LM(NET, P, X, Y, mu=0.0), ValueError, r"mu must lie in \(0\.0, inf\]; got 0\.0"),
    Case(
        "lm mu=nan",
        lambda: LM(NET, P, X, Y, mu=float("nan")),
        ValueError,
        r"mu must be a finite number; got nan",
    ),
    Case(
        "lm mu='big'",
        lambda: LM(NET, P, X, Y, mu="big"),
        TypeError,
        r"mu must be a real number; got 'big' \(str\)",
    ),
    Case(
        "lm mu > mu_max",
        lambda: LM(NET, P, X, Y, mu=1.0, mu_max=1e-3),
        ValueError,
        r"mu must not exceed mu_max .*got mu=1\.0, mu_max=0\.001",
    ),
    Case(
        "lm goal=-1",
        lambda: LM(NET, P, X, Y, goal=-1),
        ValueError,
        r"goal must lie in \[0\.0, inf\]; got -1\.0",
    ),
    Case(
        "lm goal=None",
        lambda: LM(NET, P, X, Y, goal=None),
        TypeError,
        r"goal must be a real number; got None",
    ),
    Case(
        "lm min_grad=-1e-3",
        lambda: LM(NET, P, X, Y, min_grad=-1e-3),
        ValueError,
        r"min_grad must lie in \[0\.0, inf\]",
    ),
    Case(
        "lm cg_tol=-1",
        lambda: LM(NET, P, X, Y, cg_tol=-1.0),
        ValueError,
        r"cg_tol must lie in \[0\.0, inf\]; got -1\.0",
    ),
]

# --- levenberg_marquardt: names, flags, data ---------------------------------------------------
CASES += [
    Case(
        "lm solver='qr'",
        lambda: LM(NET, P, X, Y, solver="qr"),
        ValueError,
        r"solver must be one of \['dense', 'accumulate', 'cg', 'dual', 'auto'\]; got 'qr'",
    ),
    Case(
        "lm damping='fletcher'",
        lambda: LM(NET, P, X, Y, damping="fletcher"),
        ValueError,
        r"damping must be one of \['marquardt', 'nielsen', 'trust_region'\]; got 'fletcher'",
    ),
    Case(
        "lm scaling='diag'",
        lambda: LM(NET, P, X, Y, scaling="diag"),
        ValueError,
        r"scaling must be one of \['identity', 'marquardt'\]; got 'diag'",
    ),
    Case(
        "lm curvature='fisher'",
        lambda: LM(NET, P, X, Y, curvature="fisher"),
        ValueError,
        r"curvature must be one of \['ggn', 'hessian'\]; got 'fisher'",
    ),
    Case(
        "lm hessian with cg",
        lambda: LM(NET, P, X, Y, curvature="hessian", solver="cg"),
        ValueError,
        r"solver must be 'dense' or 'auto'; got 'cg'",
    ),
    Case(
        "lm data_parallel='yes'",
        lambda: LM(NET, P, X, Y, data_parallel="yes"),
        TypeError,
        r"data_parallel must be True or False; got 'yes'",
    ),
    Case(
        "lm val=(x,)",
        lambda: LM(NET, P, X, Y, val=(X,)),
        TypeError,
        r"val must be a pair \(x_val, y_val\) .*; got a tuple of length 1",
        values=True,
    ),
    Case(
        "lm val=x",
        lambda: LM(NET, P, X, Y, val=X),
        TypeError,
        r"val must be a pair \(x_val, y_val\) .*; got an array of shape \(4, 2\)",
    ),
    Case(
        "lm val rows",
        lambda: LM(NET, P, X, Y, val=(X, Y[:3])),
        ValueError,
        r"val: y has 3 rows but x has 4",
        values=True,
    ),
    Case(
        "lm val nan",
        lambda: LM(NET, P, X, Y, val=(with_nan(X), Y)),
        ValueError,
        r"val: x holds 1 non-finite value",
    ),
    Case(
        "lm x nan",
        lambda: LM(NET, P, with_nan(X, (2, 1)), Y),
        ValueError,
        r"x holds 1 non-finite value \(the first, nan, at index \(2, 1\)\)",
    ),
    Case(
        "lm params nan",
        lambda: LM(NET, P_NAN, X, Y),
        ValueError,
        r"params\[0\]\['W'\] holds 1 non-finite value",
    ),
    Case(
        "lm model neither network nor callable",
        lambda: LM("mlp", P, X, Y),
        TypeError,
        r"fb\.levenberg_marquardt needs an fbackprop Network \(fb\.mlp, fb\.serial\) or an apply\(params, x\)"
        + MODEL,
    ),
    Case(
        "lm apply with an unbatched x",
        lambda: LM(APPLY, P, X[0], Y),
        ValueError,
        r"x must be a batch \(N, \*in_shape\), one example per leading row, .*; got shape \(2,\)",
    ),
]

# --- newton, gauss_newton, hessian_free ------------------------------------------------------------
CASES += [
    Case(
        "newton model 3",
        lambda: fb.newton(3, P, X, Y),
        TypeError,
        r"^fb\.newton needs an fbackprop Network" + MODEL,
    ),
    Case(
        "newton solver",
        lambda: fb.newton(NET, P, X, Y, solver="cg"),
        TypeError,
        r"fb\.newton always uses the exact Hessian .*no solver option \(got solver='cg'\)",
    ),
    Case(
        "gn model None",
        lambda: fb.gauss_newton(None, P, X, Y),
        TypeError,
        r"^fb\.gauss_newton needs an fbackprop Network" + MODEL,
    ),
    Case(
        "gn max_steps=0",
        lambda: fb.gauss_newton(NET, P, X, Y, max_steps=0),
        ValueError,
        r"max_steps must be an integer",
    ),
    Case(
        "gn armijo=1",
        lambda: fb.gauss_newton(NET, P, X, Y, armijo=1.0),
        ValueError,
        r"armijo must lie in \(0\.0, 1\.0\)",
    ),
    Case(
        "gn max_halvings=-1",
        lambda: fb.gauss_newton(NET, P, X, Y, max_halvings=-1),
        ValueError,
        r"max_halvings must be an integer from 0 to inf; got -1",
    ),
    Case(
        "gn x nan", lambda: fb.gauss_newton(NET, P, with_nan(X), Y), ValueError, r"x holds 1 non-finite value"
    ),
    Case(
        "hf model a dict",
        lambda: fb.hessian_free({}, P, X, Y),
        TypeError,
        r"^fb\.hessian_free needs an fbackprop Network" + MODEL,
    ),
    Case(
        "hf cg_iters=0",
        lambda: fb.hessian_free(NET, P, X, Y, cg_iters=0),
        ValueError,
        r"cg_iters must be an integer from 1 to inf; got 0",
    ),
    Case(
        "hf batch_size=5",
        lambda: fb.hessian_free(NET, P, X, Y, batch_size=5),
        ValueError,
        r"batch_size must be an integer from 1 to 4; got 5",
    ),
    Case(
        "hf lam=0",
        lambda: fb.hessian_free(NET, P, X, Y, lam=0.0),
        ValueError,
        r"lam must lie in \(0\.0, inf\]; got 0\.0",
    ),
    Case(
        "hf decay=1.5",
        lambda: fb.hessian_free(NET, P, X, Y, decay=1.5),
        ValueError,
        r"decay must lie in \[0\.0, 1\.0\]",
    ),
    Case(
        "hf key=0",
        lambda: fb.hessian_free(NET, P, X, Y, key=0),
        TypeError,
        r"key must be a JAX PRNG key such as jax\.random\.key\(0\); got 0",
    ),
    Case(
        "hf precondition='yes'",
        lambda: fb.hessian_free(NET, P, X, Y, precondition="yes"),
        TypeError,
        r"precondition must be True or False; got 'yes'",
    ),
]

# --- least_squares ---------------------------------------------------------------------------------
CASES += [
    Case(
        "ls residual not callable", lambda: fb.least_squares(X, P), TypeError, r"residual must be a callable"
    ),
    Case(
        "ls integer residual",
        lambda: fb.least_squares(lambda p: jnp.array([1, 2]), P),
        TypeError,
        r"must return a floating array; it returned int",
        values=True,
    ),
    Case(
        "ls tuple residual",
        lambda: fb.least_squares(lambda p: (p[0]["b"], p[1]["b"]), P),
        TypeError,
        r"residual\(params\) must return one array; it returned PyTreeDef",
    ),
    Case(
        "ls empty residual",
        lambda: fb.least_squares(lambda p: p[0]["b"][:0], P),
        ValueError,
        r"returned an empty array of shape \(0,\)",
    ),
    Case(
        "ls integer params",
        lambda: fb.least_squares(lambda p: p * 1.0, INTS),
        TypeError,
        r"params has dtype int\d+; parameters must be real floating point",
    ),
    Case(
        "ls params nan",
        lambda: fb.least_squares(lambda p: p, with_nan(np.ones(3), 1)),
        ValueError,
        r"params holds 1 non-finite value \(the first, nan, at index \(1,\)\)",
    ),
    Case(
        "ls mu_dec=2",
        lambda: fb.least_squares(lambda p: p, np.ones(3), mu_dec=2.0),
        ValueError,
        r"mu_dec must lie in \(0\.0, 1\.0\)",
    ),
    Case(
        "ls max_steps=0",
        lambda: fb.least_squares(lambda p: p, np.ones(3), max_steps=0),
        ValueError,
        r"max_steps must be an integer from 1",
    ),
]

# --- auto_solver ---
CASES += [
    Case(
        "auto_solver n_rows=0",
        lambda: fb.optim.auto_solver(0, 10),
        ValueError,
        r"n_rows must be an integer from 1",
    ),
]


# --- kfac ------------------------------------------------------------------------------------
NORMED = fb.serial(fb.layers.Dense(3), fb.layers.LayerNorm(), fb.layers.Dense(1), input_shape=(2,))
CASES += [
    Case(
        "kfac: damping=0",
        lambda: fb.kfac(NET, "squared_error", damping=0.0),
        ValueError,
        r"damping must lie in \(0",
    ),
    Case(
        "kfac: ema=1.5",
        lambda: fb.kfac(NET, "squared_error", ema=1.5),
        ValueError,
        r"ema must lie in \[0\.0, 1\.0\]; got 1\.5",
    ),
    Case(
        "kfac: inverse_every=0",
        lambda: fb.kfac(NET, "squared_error", inverse_every=0),
        ValueError,
        r"inverse_every must be an integer from 1 to inf; got 0",
    ),
    Case(
        "kfac: learning_rate=-1",
        lambda: fb.kfac(NET, "squared_error", learning_rate=-1.0),
        ValueError,
        r"learning_rate must lie in \(0\.0, inf\]; got -1\.0",
    ),
    Case(
        "kfac: norm_constraint=0",
        lambda: fb.kfac(NET, "squared_error", norm_constraint=0.0),
        ValueError,
        r"norm_constraint must lie in \(0\.0, inf\]; got 0\.0",
    ),
    Case(
        "kfac: adapt_damping='yes'",
        lambda: fb.kfac(NET, "squared_error", adapt_damping="yes"),
        TypeError,
        r"adapt_damping must be True or False; got 'yes'",
    ),
    Case(
        "kfac: kind='mc'",
        lambda: fb.kfac(NET, "squared_error", kind="mc"),
        ValueError,
        r"kind must be one of",
    ),
    Case(
        "kfac: a LayerNorm",
        lambda: fb.kfac(NORMED, "squared_error"),
        TypeError,
        r"fb\.kfac needs kfac_factors on every layer with parameters; layer 2 LayerNorm has none",
    ),
    Case(
        "kfac: an apply callable",
        lambda: fb.kfac(APPLY, "squared_error"),
        TypeError,
        r"fb\.kfac is hand-written over the network's layers and needs an fbackprop Network",
    ),
    Case(
        "kfac: key=0", lambda: fb.kfac(NET, "squared_error", kind="fisher", key=0), TypeError, r"key must be"
    ),
]

# --- ekfac: fb.kfac's options, checked by the same code --------------------------------------
CASES += [
    Case(f"ekfac: {name}", (lambda net=net, kw=kw: fb.ekfac(net, "squared_error", **kw)), exc, pattern)
    for name, net, kw, exc, pattern in [
        ("damping=0", NET, {"damping": 0.0}, ValueError, r"damping must lie in \(0"),
        ("ema=1.5", NET, {"ema": 1.5}, ValueError, r"ema must lie in \[0\.0, 1\.0\]; got 1\.5"),
        (
            "inverse_every=0",
            NET,
            {"inverse_every": 0},
            ValueError,
            r"inverse_every must be an integer from 1 to inf; got 0",
        ),
        (
            "damping_every=1.5",
            NET,
            {"damping_every": 1.5},
            TypeError,
            r"damping_every must be an integer; got 1\.5",
        ),
        (
            "learning_rate=-1",
            NET,
            {"learning_rate": -1.0},
            ValueError,
            r"learning_rate must lie in \(0\.0, inf\]; got -1\.0",
        ),
        (
            "momentum=-1",
            NET,
            {"momentum": -1.0},
            ValueError,
            r"momentum must lie in \[0\.0, inf\]; got -1\.0",
        ),
        (
            "norm_constraint=0",
            NET,
            {"norm_constraint": 0.0},
            ValueError,
            r"norm_constraint must lie in \(0\.0, inf\]; got 0\.0",
        ),
        (
            "adapt_damping='yes'",
            NET,
            {"adapt_damping": "yes"},
            TypeError,
            r"adapt_damping must be True or False; got 'yes'",
        ),
        ("kind='mc'", NET, {"kind": "mc"}, ValueError, r"kind must be one of"),
        (
            "a LayerNorm",
            NORMED,
            {},
            TypeError,
            r"fb\.ekfac needs kfac_factors on every layer with parameters; layer 2 LayerNorm has none",
        ),
        (
            "an apply callable",
            APPLY,
            {},
            TypeError,
            r"fb\.ekfac is hand-written over the network's layers and needs an fbackprop Network",
        ),
        ("key=0", NET, {"kind": "fisher", "key": 0}, TypeError, r"key must be"),
    ]
]


# --- the parts: solve parts, damping rules ----------------------------------------------------------
NORMED_P = NORMED.init(jax.random.key(0))


class NoPairRule(NamedTuple):
    def accept(self, decreased, rho):
        return decreased

    def update(self, mu, nu, rho, accepted):
        return mu


CASES += [
    Case(
        "lm damping rule with mu_dec beside it",
        lambda: LM(NET, P, X, Y, damping=fb.optim.Marquardt(), mu_dec=0.5),
        ValueError,
        r"mu_dec and mu_inc belong to the damping rule: give them to it \(e\.g\. fb\.optim\.Marquardt\(",
    ),
    Case(
        "lm nielsen with mu_inc",
        lambda: LM(NET, P, X, Y, damping="nielsen", mu_inc=3.0),
        ValueError,
        r"damping='nielsen' has no mu_dec or mu_inc .*got mu_dec=0\.1, mu_inc=3\.0",
    ),
    Case(
        "lm Marquardt(mu_dec=2)",
        lambda: LM(NET, P, X, Y, damping=fb.optim.Marquardt(mu_dec=2.0)),
        ValueError,
        r"Marquardt\.mu_dec must lie in \(0\.0, 1\.0\)",
    ),
    Case(
        "lm TrustRegion(rho_accept=-1)",
        lambda: LM(NET, P, X, Y, damping=fb.optim.TrustRegion(rho_accept=-1.0)),
        ValueError,
        r"TrustRegion\.rho_accept must lie in \[0\.0",
    ),
    Case(
        "lm damping rule returning one value",
        lambda: LM(NET, P, X, Y, damping=NoPairRule()),
        TypeError,
        r"NoPairRule\.update\(mu, nu, rho, accepted\) must return a pair of real scalars",
    ),
    Case(
        "lm line_search a string",
        lambda: LM(NET, P, X, Y, line_search="yes"),
        TypeError,
        r"line_search must be None, True or False, or a fb\.optim\.Backtracking\(factor, armijo, max_steps\) "
        r"part; got 'yes'",
    ),
    Case(
        "lm Backtracking(factor=1.5)",
        lambda: LM(NET, P, X, Y, line_search=fb.optim.Backtracking(factor=1.5)),
        ValueError,
        r"Backtracking\.factor must lie in \(0\.0, 1\.0\) \(it shrinks the step length\); got 1\.5",
    ),
    Case(
        "lm Backtracking(armijo=0)",
        lambda: LM(NET, P, X, Y, line_search=fb.optim.Backtracking(armijo=0.0)),
        ValueError,
        r"Backtracking\.armijo must lie in \(0\.0, 1\.0\)",
    ),
    Case(
        "lm Backtracking(max_steps=-1)",
        lambda: LM(NET, P, X, Y, line_search=fb.optim.Backtracking(max_steps=-1)),
        ValueError,
        r"Backtracking\.max_steps must be",
    ),
    Case(
        "ls line_search=1",
        lambda: fb.least_squares(lambda p: p, np.ones(3), line_search=1),
        TypeError,
        r"line_search must be None, True or False",
    ),
    Case(
        "lm damping an int",
        lambda: LM(NET, P, X, Y, damping=3),
        TypeError,
        r"damping must be one of \['marquardt', 'nielsen', 'trust_region'\] or a damping rule with accept",
    ),
    Case(
        "lm CG part with cg_tol beside it",
        lambda: LM(NET, P, X, Y, solver=fb.optim.CG(), cg_tol=1e-3),
        ValueError,
        r"cg_tol belong to the solve part: give them to it",
    ),
    Case(
        "lm CG(maxiter=0)",
        lambda: LM(NET, P, X, Y, solver=fb.optim.CG(maxiter=0)),
        ValueError,
        r"CG\.maxiter must be an integer from 1",
    ),
    Case(
        "lm solver an int",
        lambda: LM(NET, P, X, Y, solver=3),
        TypeError,
        r"solver must be one of .* or a solve part with linearize\(pb, theta\) and solve\(pb, lin, mu\)",
    ),
    Case(
        "lm KFAC with marquardt scaling",
        lambda: LM(NET, P, X, Y, solver=fb.optim.KFAC(), scaling="marquardt"),
        ValueError,
        r"solver=fb\.optim\.KFAC\(\) damps with the identity .*scaling must be 'identity'; got 'marquardt'",
    ),
    Case(
        "lm KFAC on a LayerNorm",
        lambda: LM(NORMED, NORMED_P, X, Y, solver=fb.optim.KFAC()),
        TypeError,
        r"fb\.levenberg_marquardt\(solver=fb\.optim\.KFAC\(\)\) needs kfac_factors on every layer",
    ),
    Case(
        "lm KFAC(kind='fisher')",
        lambda: LM(NET, P, X, Y, solver=fb.optim.KFAC(kind="fisher")),
        ValueError,
        r"KFAC\.kind must be one of \['exact', 'empirical'\]; got 'fisher'",
    ),
    Case(
        "lm a solve part with curvature='hessian'",
        lambda: LM(NET, P, X, Y, solver=fb.optim.Dense(), curvature="hessian"),
        ValueError,
        r"curvature='hessian' is the solve part fb\.optim\.Newton\(\)",
    ),
]


@table(CASES)
def test_bad_input(case, compiles):
    check(case, compiles)
