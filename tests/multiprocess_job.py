"""The job ``tests/test_distributed.py`` runs under ``python -m fbackprop.launch``.

Every process holds its own share of the rows (``ROWS // processes`` each), joins them with
``fb.distributed.global_batch`` and computes each batch-wide quantity over the global batch; it also
computes the same quantity in one process, on one device, over all the rows (NumPy arrays: nothing
is sharded), and prints one line per quantity: ``<name> <relative difference> <extra>``. The test
reads rank 0's and rank 1's lines. The last part checks that bad input fails on every process alike.
"""

import functools
import sys

import fbackprop.distributed as D

rank, n_proc = D.initialize()

import jax  # noqa: E402 (after initialize, as JAX's distributed runtime requires)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import fbackprop as fb  # noqa: E402

jax.config.update("jax_enable_x64", True)
ROWS = 32
flat = lambda t: np.asarray(jax.flatten_util.ravel_pytree(t)[0])  # noqa: E731


def rel(a, b) -> float:
    """``max |a - b| / max |b|`` over the flattened pytrees."""
    a, b = flat(a), flat(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def data(n_out: int):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS, 3))
    if n_out == 1:
        Y = np.sin(X[:, :1]) * X[:, 1:2] + 0.1 * X[:, 2:]
    else:
        Y = np.argmax(X @ rng.normal(size=(3, n_out)), axis=1)
    mine = slice(rank * ROWS // n_proc, (rank + 1) * ROWS // n_proc)
    return (X, Y), D.global_batch(X[mine], Y[mine])


(X, Y), (x, y) = data(1)
(Xc, Yc), (xc, yc) = data(3)
net, clf = fb.mlp([3, 5, 1]), fb.mlp([3, 4, 3])
params, cparams = net.init(jax.random.key(0), jnp.float64), clf.init(jax.random.key(1), jnp.float64)
v = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), params)
key = jax.random.key(2)


def report(name: str, f, *extra):
    print(name, f"{rel(f(x, y), f(X, Y)):.3e}", *extra, flush=True)


# Training: batch mode, and mini-batches drawn from the global permutation of the same key.
adam = optax.adam(1e-2)
for mode, kw in [("batch", {}), ("minibatch", {"batch_size": 8, "key": jax.random.key(3)})]:

    def trained(a, b, mode=mode, kw=kw):
        return fb.train(net, "squared_error", params, a, b, adam, epochs=4, mode=mode, **kw).params

    report(f"train-{mode}", trained)

# Levenberg-Marquardt (every solver), Newton, Gauss-Newton, Hessian-free: the same status, iterations
# and accepted steps.
LM = {
    "dense": fb.levenberg_marquardt,
    "accumulate": functools.partial(fb.levenberg_marquardt, solver="accumulate", chunk_size=6),
    "cg": functools.partial(fb.levenberg_marquardt, solver="cg", cg_tol=1e-13),
    "dual": functools.partial(fb.levenberg_marquardt, solver="dual"),
    "newton": fb.newton,
    "gauss_newton": fb.gauss_newton,
    "hessian_free": functools.partial(fb.hessian_free, key=jax.random.key(4)),
}
for solver, fit in LM.items():
    runs = [fit(net, params, a, b, max_steps=8) for a, b in [(x, y), (X, Y)]]
    steps = [np.asarray(r.history.accepted) for r in runs]
    same = int(runs[0].status) == int(runs[1].status) and int(runs[0].iterations) == int(runs[1].iterations)
    same &= bool(np.array_equal(*steps, equal_nan=True))
    hist = [np.nan_to_num(np.asarray(r.history.loss)) for r in runs]
    print(
        f"lm-{solver} {rel(*hist):.3e} params {rel(runs[0].params, runs[1].params):.3e} same {same} "
        f"iterations {int(runs[1].iterations)}",
        flush=True,
    )
ce = [
    fb.levenberg_marquardt(clf, cparams, a, b, loss="cross_entropy", solver="accumulate", max_steps=8)
    for a, b in [(xc, yc), (Xc, Yc)]
]
print("lm-cross-entropy", f"{rel(ce[0].params, ce[1].params):.3e}", flush=True)

# Curvature products, diagonals, K-FAC factors and the estimators over those products.
SE = "squared_error"
report("hvp", lambda a, b: fb.hvp(net, SE)(params, a, b, v))
report("hvp-backprop", lambda a, b: fb.hvp(net, SE, method="backprop")(params, a, b, v))
report("ggn_vp", lambda a, b: fb.ggn_vp(net, SE)(params, a, b, v))
report("fisher_vp", lambda a, b: fb.fisher_vp(net, SE)(params, a, b, v))
report("fisher_vp-mc", lambda a, b: fb.fisher_vp(net, SE, kind="mc")(params, a, b, v, key))
report("hessian_diag", lambda a, b: fb.hessian_diag(net, SE)(params, a, b))
report("ggn_diag", lambda a, b: fb.ggn_diag(net, SE)(params, a, b))
report("kfac_factors", lambda a, b: fb.kfac_factors(net, SE)(params, a, b))
print(
    "kfac_factors-ce",
    f"{rel(*(fb.kfac_factors(clf, 'cross_entropy')(cparams, a, b) for a, b in [(xc, yc), (Xc, Yc)])):.3e}",
    flush=True,
)
report(
    "lanczos", lambda a, b: fb.lanczos(lambda u: fb.ggn_vp(net, SE)(params, a, b, u), params, key, 8).alpha
)
report(
    "hutchinson",
    lambda a, b: fb.hutchinson_trace(lambda u: fb.hvp(net, SE)(params, a, b, u), params, key, 16),
)

# Bad input: the same error on every process, never a hang in a collective.
try:
    D.global_batch(np.ones((2 + 2 * rank, 3)), np.ones((2 + 2 * rank, 1)))
except ValueError as err:
    print("uneven", str(err).split(";")[0].split(": ")[-1], flush=True)
local_y = Y[rank * ROWS // n_proc : (rank + 1) * ROWS // n_proc].copy()
if rank == 1:
    local_y[3, 0] = np.nan  # one process's rows hold a NaN
xb, yb = D.global_batch(X[rank * ROWS // n_proc : (rank + 1) * ROWS // n_proc], local_y)
try:
    fb.levenberg_marquardt(net, params, xb, yb, max_steps=2)
except ValueError as err:
    print("nan", str(err)[:60], flush=True)
sys.exit(0)
