"""Bad inputs to data given as chunks (``fb.Chunks``, ``fbackprop.streaming``): the source, the
chunks, and the functions and solvers that cannot stream; one row a case (``cases.py``: the runner,
how to add one).
"""

from __future__ import annotations

import jax
import numpy as np
import optax

import fbackprop as fb

from .cases import NONFINITE, Case, check, table, with_nan

NET = fb.mlp([2, 3, 1], activation="tanh")
P = NET.init(jax.random.key(0))
X = np.linspace(-1.0, 1.0, 16).reshape(8, 2)
Y = np.linspace(0.0, 1.0, 8).reshape(8, 1)
PAIRS = [(X[:3], Y[:3]), (X[3:6], Y[3:6]), (X[6:], Y[6:])]
DATA = fb.Chunks(PAIRS)
WIDE = fb.Chunks(PAIRS[:2] + [(np.ones((2, 3)), Y[6:])])  # chunk 2 has 3 inputs, the net takes 2
NAN = fb.Chunks(PAIRS[:1] + [(with_nan(X[3:6], (1, 0)), Y[3:6])])
EMPTY = fb.Chunks(list)  # a callable returning an empty list
KEY = jax.random.key(1)
LM = fb.levenberg_marquardt


def _generator():
    yield from PAIRS


CASES: list[Case] = [
    Case(
        "Chunks: a generator object (one-shot)",
        lambda: fb.Chunks(_generator()),
        TypeError,
        r"re-readable source .* one-shot iterator is spent after the first; got generator .* Pass the "
        r"generator function itself",
    ),
    Case(
        "Chunks: iter(list) (one-shot)",
        lambda: fb.Chunks(iter(PAIRS)),
        TypeError,
        r"one-shot iterator .* got list_iterator",
    ),
    Case(
        "Chunks: an array",
        lambda: fb.Chunks(X),
        TypeError,
        r"source of \(x, y\) chunks .* got ndarray\. For arrays use fb\.Chunks\.of\(x, y, chunk_size\)",
    ),
    Case(
        "Chunks: not iterable",
        lambda: fb.Chunks(3),
        TypeError,
        r"a callable returning an iterable of \(x, y\) chunks, or a re-iterable .* got int 3",
    ),
    Case(
        "Chunks.of: rows differ",
        lambda: fb.Chunks.of(X, Y[:5], 2),
        ValueError,
        r"x and y must have the same number of rows; got x \(8, 2\) and y \(5, 1\)",
    ),
    Case(
        "Chunks.of: chunk_size=0",
        lambda: fb.Chunks.of(X, Y, 0),
        ValueError,
        r"chunk_size must be an integer from 1",
    ),
    Case(
        "Chunks.of: sizes do not sum to N",
        lambda: fb.Chunks.of(X, Y, sizes=[3, 3]),
        ValueError,
        r"sizes must sum to the 8 rows of x; got \[3, 3\] \(sum 6\)",
    ),
    Case(
        "Chunks.of: both chunk_size and sizes",
        lambda: fb.Chunks.of(X, Y, 2, sizes=[4, 4]),
        TypeError,
        r"takes one of chunk_size .* or sizes",
    ),
    Case(
        "hvp: a one-shot generator as x",
        lambda: fb.hvp(NET, "squared_error")(P, _generator(), None, P),
        TypeError,
        r"one-shot iterator",
    ),
    Case(
        "hvp: y beside chunks",
        lambda: fb.hvp(NET, "squared_error")(P, DATA, Y, P),
        TypeError,
        r"fb\.hvp: y must be None when x is a stream of chunks .*; got y of type ndarray",
    ),
    Case(
        "ggn_diag: a chunk of the wrong width",
        lambda: fb.ggn_diag(NET, "squared_error")(P, WIDE, None),
        ValueError,
        r"chunk 2 of the data: .*\(2, 3\)",
        values=True,
    ),
    Case(
        "ggn_vp: NaN in a chunk",
        lambda: fb.ggn_vp(NET, "squared_error")(P, NAN, None, P),
        ValueError,
        r"chunk 1 of the data: x " + NONFINITE.format("nan", r"\(1, 0\)"),
        values=True,
    ),
    Case(
        "hessian_diag: an empty source",
        lambda: fb.hessian_diag(NET, "squared_error")(P, EMPTY, None),
        ValueError,
        r"the data source gave no chunks",
    ),
    Case(
        "ggn_vp: a chunk that is not a pair",
        lambda: fb.ggn_vp(NET, "squared_error")(P, [(X, Y, Y)], None, P),
        TypeError,
        r"chunk 0 of the data must be a pair \(x, y\) of inputs and targets; got a tuple of length 3",
    ),
    Case(
        "fisher_vp mc: chunks",
        lambda: fb.fisher_vp(NET, "squared_error", kind="mc")(P, DATA, None, P, KEY),
        TypeError,
        r'fb\.fisher_vp\(kind="mc"\) cannot take its data as chunks: .* use kind="empirical"',
    ),
    Case(
        "ggn_diag per_example: chunks",
        lambda: fb.ggn_diag(NET, "squared_error", per_example=True)(P, DATA, None),
        TypeError,
        r"fb\.ggn_diag\(per_example=True\) cannot take its data as chunks",
    ),
    Case(
        "ekfac_factors: chunks",
        lambda: fb.ekfac_factors(NET, "squared_error")(P, DATA, None),
        TypeError,
        r"fb\.ekfac_factors cannot take its data as chunks: its eigenbases",
    ),
    Case(
        "kfac_factors fisher: chunks",
        lambda: fb.kfac_factors(NET, "squared_error", kind="fisher")(P, DATA, None, KEY),
        TypeError,
        r'fb\.kfac_factors\(kind="fisher"\) cannot take its data as chunks',
    ),
    Case(
        "levenberg_marquardt: a one-shot generator",
        lambda: LM(NET, P, _generator(), None),
        TypeError,
        r"one-shot iterator .* Pass the generator function itself",
    ),
    Case(
        "levenberg_marquardt: y beside chunks",
        lambda: LM(NET, P, DATA, Y),
        TypeError,
        r"fb\.levenberg_marquardt: y must be None when x is a stream of chunks",
    ),
    Case(
        "levenberg_marquardt: dense solver on chunks",
        lambda: LM(NET, P, DATA, None, solver="dense"),
        ValueError,
        r"solver must be 'accumulate', 'cg' or 'auto' .*; got 'dense', which needs the whole batch",
    ),
    Case(
        "levenberg_marquardt: dual solver on chunks",
        lambda: LM(NET, P, DATA, None, solver="dual"),
        ValueError,
        r"got 'dual', which needs the whole batch",
    ),
    Case(
        "levenberg_marquardt: KFAC part on chunks",
        lambda: LM(NET, P, DATA, None, solver=fb.optim.KFAC()),
        ValueError,
        r"got 'KFAC', which needs the whole batch",
    ),
    Case(
        "levenberg_marquardt: curvature=hessian on chunks",
        lambda: LM(NET, P, DATA, None, curvature="hessian"),
        ValueError,
        r"curvature='hessian' .* data given as chunks take curvature='ggn'",
    ),
    Case(
        "levenberg_marquardt: data_parallel on chunks",
        lambda: LM(NET, P, DATA, None, data_parallel=True),
        ValueError,
        r"data_parallel=True shards an in-memory batch",
    ),
    Case(
        "levenberg_marquardt: a chunk of the wrong width",
        lambda: LM(NET, P, WIDE, None),
        ValueError,
        r"chunk 2 of the data: .*\(2, 3\)",
        values=True,
    ),
    Case(
        "levenberg_marquardt: chunks under jax.jit",
        lambda: jax.jit(lambda p: LM(NET, p, DATA, None).params)(P),
        TypeError,
        r"on data given as chunks runs its loop on the host, .* call it outside jax\.jit and jax\.vmap",
    ),
    Case(
        "gauss_newton: chunks",
        lambda: fb.gauss_newton(NET, P, DATA, None),
        TypeError,
        r"fb\.gauss_newton needs the whole batch at once and cannot take data given as chunks .* "
        r"stream through fb\.levenberg_marquardt \(solver='accumulate' or 'cg'\)",
    ),
    Case(
        "hessian_free: a list of pairs",
        lambda: fb.hessian_free(NET, P, PAIRS, None),
        TypeError,
        r"this method needs the whole batch at once and cannot take data given as chunks",
    ),
    Case(
        "newton: chunks",
        lambda: fb.newton(NET, P, DATA, None),
        TypeError,
        r"fb\.newton needs the whole batch at once",
    ),
    Case(
        "backprop: chunks",
        lambda: fb.backprop(NET, "squared_error")(P, DATA, None),
        TypeError,
        r"this function needs the whole batch at once and cannot take data given as chunks",
    ),
    Case(
        "train: chunks",
        lambda: fb.train(NET, "squared_error", P, DATA, None, optax.sgd(0.1), epochs=1),
        TypeError,
        r"this function needs the whole batch at once and cannot take data given as chunks",
    ),
    Case(
        "levenberg_marquardt: an empty source",
        lambda: LM(NET, P, EMPTY, None),
        ValueError,
        r"the data source gave no chunks",
    ),
    Case(
        "levenberg_marquardt: chunks and a bad cg_tol",
        lambda: LM(NET, P, DATA, None, solver="cg", cg_tol=-1.0),
        ValueError,
        r"cg_tol must lie in \[0\.0, inf\]; got -1\.0",
    ),
]


@table(CASES)
def test_bad_input(case, compiles):
    check(case, compiles)
