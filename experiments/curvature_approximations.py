"""How good is a curvature approximation? Directions and matrices against the exact GGN in training.

K-FAC, EKFAC, the diagonal GGN, the empirical Fisher and Hessian-free's CG, each against the exact
damped Gauss-Newton direction and matrix, at checkpoints along Adam runs.

For a small network the exact generalized Gauss-Newton matrix ``G`` (Schraudolph 2002; ``P x P``,
``fb.ggn``) and the exact damped direction ``d* = (G + lam I)^-1 g`` (``g`` the gradient,
``fb.backprop``) are computable densely. Each approximation ``A_hat`` of ``G`` gives a direction
``(A_hat + lam I)^-1 g``, measured by its cosine with ``d*``, and is measured as a matrix by its
relative error ``||A_hat - G||_F / ||G||_F`` and on ``G``'s top ``k`` eigenvectors ``U_k``,
``||(A_hat - G) U_k||_F / ||G U_k||_F``:

- ``kfac``: K-FAC (Martens & Grosse 2015; KFC for the convolutions, Grosse & Martens 2016),
  ``kind="exact"`` factors (KFLR, Botev, Ritter & Barber 2017): ``fb.kfac_factors``, direction
  ``fb.kfac_inverse_vp`` (the damping split between the factors by Martens & Grosse's ``pi``), matrix
  ``blockdiag(kron(G_l, A_l))`` (each layer's block over ``[W | b]`` permuted to ``fb.flatten``'s
  order, ``W`` row-major then ``b``);
- ``ekfac``: EKFAC (George, Laurent, Bouthillier, Ballas & Vincent 2018), K-FAC's eigenbasis with the
  diagonal refitted to the per-example gradients: ``fb.ekfac_factors``, ``fb.ekfac_inverse_vp``, matrix
  ``blockdiag((U_G (x) U_A) diag(vec S) (U_G (x) U_A)^T)``;
- ``diag``: the exact GGN diagonal (``fb.ggn_diag``), direction ``g / (diag + lam)``;
- ``efisher``: the empirical Fisher ``F = (1/N) sum_n g_n g_n^T`` of the per-example gradients
  (``fb.per_example_grads``), direction ``(F + lam I)^-1 g`` (dense);
- ``blocks``: the exact GGN's own layer-diagonal blocks (a reference: the Frobenius floor of every
  layer-block-diagonal approximation, K-FAC's, EKFAC's and the diagonal's included);
- ``cg<m>``: Hessian-free's direction (Martens 2010): ``m`` steps of conjugate gradients on
  ``(G + lam I) d = g`` from ``d = 0`` with ``fb.ggn_vp`` products (``jax.scipy.sparse.linalg.cg``,
  ``maxiter=m``, no early stop); it uses ``G`` itself, so it has no matrix error;
- ``gradient``: ``g`` itself (plain gradient descent's direction), the baseline.

Beside them, the share of the gradient on ``G``'s top ``k`` eigenvectors, ``||U_k^T g||^2 / ||g||^2``
(the table's "g on top k").

The damping is relative to the GGN's mean eigenvalue, ``lam = --damping * tr(G) / P`` at every
checkpoint; the cosines are also measured at the relative dampings ``--sweep`` (one more solve each;
the matrix errors do not depend on ``lam``). The runs: full-batch Adam (``optax.adam(--lr)``, Kingma
& Ba 2015) on ``--n`` of scikit-learn's 8x8 digits (pixels in [0, 1]; the examples and the Glorot
initialisation drawn by the run's seed), the batch-mean softmax cross-entropy, float64; the curvature
is that of the same batch, measured at the checkpoints ``--steps``. Networks: the MLP ``64-h-h-10``
(tanh, ``--hidden h``) and, in the full run, a small CNN on the digits as ``(N, 8, 8, 1)`` images:
``Conv2D(c1, 3x3, SAME)``, tanh, ``AvgPool2D(2x2)``, ``Conv2D(c2, 3x3, SAME)``, tanh,
``AvgPool2D(2x2)``, ``Flatten``, ``Dense(10)`` (``--channels c1,c2``). ``--seeds`` runs from seeds
``seed, seed + 1, ...``; every number in the table is a median over them (with their range), every
claim holds for each of them or is stated for the medians. ``--quick``: the MLP only, ``N = 64``,
``h = 8``, checkpoints 0, 30, 150, the sweep ``0.1``.

    python experiments/curvature_approximations.py [--n 256] [--hidden 16] [--channels 4,8]
        [--steps 0,10,30,100,300,600] [--lr 0.01] [--damping 0.01] [--sweep 0.001,0.1,1]
        [--k 10] [--cg 10,50] [--seeds 3] [--seed 0] [--quick] [--out runs/curvature_approximations]

Claims tested, for every network, seed and checkpoint: the dense K-FAC and EKFAC matrices built
here reproduce ``fb.kfac_vp`` and ``fb.ekfac_vp``, the dense GGN reproduces ``fb.ggn_vp`` and
``fb.ggn_diag``, and the per-example gradients average to ``fb.backprop``'s (relative <= 1e-10);
EKFAC's Frobenius error is at most K-FAC's (George et al. 2018: in K-FAC's eigenbasis the refitted
diagonal is the Frobenius-optimal one; up to 1e-12); the exact blocks' Frobenius error is at most
K-FAC's, EKFAC's and the diagonal's; every cosine, at every damping, lies in [-1, 1]. Over seeds
(medians, at ``--damping``): Hessian-free's cosine rises with the number of CG steps at every
checkpoint, and its most CG steps reach a cosine of at least 0.9, the best of all directions; at the
first checkpoint (initialisation) K-FAC's and EKFAC's cosines beat the gradient's and the diagonal
GGN's by 0.1 or more and the exact blocks' beat both; at the last checkpoint (the batch fitted) the
order is reversed, the gradient's cosine beating K-FAC's and EKFAC's by 0.05 or more; EKFAC's
Frobenius error is below the diagonal GGN's by 0.1 or more at every checkpoint; the empirical
Fisher's Frobenius error rises from the first checkpoint to the last by 0.2 or more, to at least 0.9
(its per-example gradients vanish as the fit improves; Kunstner, Balles & Hennig 2019); Adam lowers
the training loss at least fivefold from the first checkpoint to the last.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
from threadpoolctl import threadpool_limits  # scikit-learn's dependency (the digits need it)

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402

import fbackprop as fb  # noqa: E402

LOSS = "cross_entropy"
CLASSES = 10
TOL = 1e-10
#: rounding allowance of the Frobenius theorems (on relative errors of order 1)
ROUND = 1e-12
#: the margins of the claimed orderings
MARGIN = 0.1
LATE_MARGIN = 0.05
EF_RISE = 0.2
EF_LATE = 0.9
CG_COSINE = 0.9
LOSS_DROP = 5.0
#: what --quick changes (and it leaves the CNN out)
QUICK = {"n": 64, "hidden": 8, "steps": (0, 30, 150), "sweep": (0.1,)}
MATRICES = ("diag", "efisher", "kfac", "ekfac", "blocks")
LABELS = {
    "gradient": "gradient",
    "diag": "diagonal GGN",
    "efisher": "empirical Fisher",
    "kfac": "K-FAC",
    "ekfac": "EKFAC",
    "blocks": "exact blocks",
}


def directions(cg: tuple[int, ...]) -> tuple[str, ...]:
    """The directions compared with ``d*``, in table order."""
    return ("gradient", "diag", "efisher", "kfac", "ekfac", "blocks", *(f"cg{m}" for m in cg))


def label(name: str) -> str:
    """``"HF, CG 10"`` for ``"cg10"``; the entry of ``LABELS`` otherwise."""
    return f"HF, CG {name[2:]}" if name.startswith("cg") else LABELS[name]


# --- Problem ---------------------------------------------------------------------------------------


def mlp(hidden: int) -> fb.Network:
    """``64-h-h-10``, tanh, logits out."""
    return fb.mlp([64, hidden, hidden, CLASSES], activation="tanh")


def cnn(c1: int = 4, c2: int = 8) -> fb.Network:
    """conv(c1) -> tanh -> avg pool -> conv(c2) -> tanh -> avg pool -> flatten -> dense(10), on 8x8x1."""
    L = fb.layers
    return fb.serial(
        L.Conv2D(c1, (3, 3), padding="SAME"),
        L.Activation("tanh"),
        L.AvgPool2D((2, 2)),
        L.Conv2D(c2, (3, 3), padding="SAME"),
        L.Activation("tanh"),
        L.AvgPool2D((2, 2)),
        L.Flatten(),
        L.Dense(CLASSES),
        input_shape=(8, 8, 1),
    )


def batch(n: int, seed: int, images: bool):
    """``n`` digits drawn by ``seed``: ``x (n, 64)`` or ``(n, 8, 8, 1)`` in [0, 1] (float64), labels
    ``(n,)``."""
    x, labels = fb.data.digits(np.float64)
    idx = np.random.default_rng(seed).choice(x.shape[0], n, replace=False)
    x = x[idx].reshape(n, 8, 8, 1) if images else x[idx]
    return jnp.asarray(x), jnp.asarray(labels[idx])


# --- Dense matrices in fb.flatten's order -----------------------------------------------------------


def layer_params(tree) -> list:
    """The per-layer entries (``{"W", "b"}`` dicts, ``KFactors``, ``EKFactors``) of a params-shaped tree."""
    return jax.tree.leaves(tree, is_leaf=lambda t: isinstance(t, (dict, fb.KFactors, fb.EKFactors)))


def wb_order(W_shape) -> np.ndarray:
    """Index into ``[W | b]`` (``(fan_out, fan_in + 1)`` row-major) of each entry of a layer's block in
    ``fb.flatten``'s order (``W`` row-major, then ``b``)."""
    out, k = W_shape[0], int(np.prod(W_shape[1:]))
    rows = np.arange(out)[:, None] * (k + 1)
    return np.concatenate([(rows + np.arange(k)).ravel(), rows.ravel() + k])


def layer_slices(params) -> list[tuple[int, int, tuple]]:
    """``(start, stop, W.shape)`` of each layer's parameters in ``fb.flatten``'s order."""
    out, start = [], 0
    for theta in layer_params(params):
        size = theta["W"].size + theta["b"].size
        out.append((start, start + size, tuple(theta["W"].shape)))
        start += size
    return out


def block_diagonal(blocks_wb: list[np.ndarray], slices) -> np.ndarray:
    """The ``(P, P)`` block-diagonal matrix of per-layer blocks given in ``[W | b]`` order."""
    P = slices[-1][1]
    M = np.zeros((P, P))
    for B, (a, b, shape) in zip(blocks_wb, slices):
        order = wb_order(shape)
        M[a:b, a:b] = B[np.ix_(order, order)]
    return M


def kfac_matrix(factors, slices) -> np.ndarray:
    """K-FAC's ``blockdiag(kron(G_l, A_l))`` in ``fb.flatten``'s order."""
    return block_diagonal([np.kron(np.asarray(f.G), np.asarray(f.A)) for f in layer_params(factors)], slices)


def ekfac_matrix(factors, slices) -> np.ndarray:
    """EKFAC's ``blockdiag((U_G (x) U_A) diag(vec S) (U_G (x) U_A)^T)`` in ``fb.flatten``'s order."""
    blocks = []
    for f in layer_params(factors):
        U = np.kron(np.asarray(f.U_G), np.asarray(f.U_A))
        blocks.append((U * np.asarray(f.S).ravel()) @ U.T)
    return block_diagonal(blocks, slices)


def exact_blocks(G: np.ndarray, slices) -> np.ndarray:
    """``G`` with everything outside its layer-diagonal blocks set to zero."""
    M = np.zeros_like(G)
    for a, b, _ in slices:
        M[a:b, a:b] = G[a:b, a:b]
    return M


# --- Measures -------------------------------------------------------------------------------------


def cosine(a, b) -> float:
    """``a . b / (|a| |b|)``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def rel(a, b) -> float:
    """``max |a - b| / max(max |a|, max |b|)`` (``fb.compare``'s definition)."""
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))


def matrix_errors(A_hat: np.ndarray, G: np.ndarray, U_k: np.ndarray) -> tuple[float, float]:
    """``(||A_hat - G||_F / ||G||_F, ||(A_hat - G) U_k||_F / ||G U_k||_F)``."""
    D = A_hat - G
    return float(np.linalg.norm(D) / np.linalg.norm(G)), float(
        np.linalg.norm(D @ U_k) / np.linalg.norm(G @ U_k)
    )


def measure(net: fb.Network, cg: tuple[int, ...]):
    """A compiled ``(params, x, y, dampings, key) -> dict``: the dense GGN ``G``, the flat gradient,
    the dampings ``lam = dampings tr(G) / P`` (``(D,)``), the per-example gradients ``(N, P)``, the GGN
    diagonal, the K-FAC and EKFAC factors, their directions and the CG directions (``cg`` steps each)
    for every damping (``(D, P)``), and the consistency products (``fb.ggn_vp``, ``fb.kfac_vp``,
    ``fb.ekfac_vp`` of a random ``v``)."""
    ggn, ggn_vp, grad = fb.ggn(net, LOSS), fb.ggn_vp(net, LOSS), fb.backprop(net, LOSS)
    diag, per_example = fb.ggn_diag(net, LOSS), fb.per_example_grads(net, LOSS)
    kf, ekf = fb.kfac_factors(net, LOSS, kind="exact"), fb.ekfac_factors(net, LOSS, kind="exact")

    def flat(tree):
        return fb.flatten(tree)[0]

    def run(params, x, y, dampings, key):
        theta, unflatten = fb.flatten(params)
        G = ggn(params, x, y)
        g = grad(params, x, y)
        factors, efactors = kf(params, x, y), ekf(params, x, y)
        v = unflatten(jax.random.normal(key, theta.shape, theta.dtype))

        def directions_at(lam):
            def damped(u):
                return jax.tree.map(lambda a, b: a + lam * b, ggn_vp(params, x, y, u), u)

            out = {
                "kfac": flat(fb.kfac_inverse_vp(factors, g, lam)),
                "ekfac": flat(fb.ekfac_inverse_vp(efactors, g, lam)),
            }
            for m in cg:
                out[f"cg{m}"] = flat(jax.scipy.sparse.linalg.cg(damped, g, tol=0.0, atol=0.0, maxiter=m)[0])
            return out

        lams = dampings * jnp.trace(G) / theta.size
        return {
            "G": G,
            "g": flat(g),
            "lam": lams,
            "per_example": jax.vmap(flat)(per_example(params, x, y)),
            "diag": flat(diag(params, x, y)),
            "kfac_factors": factors,
            "ekfac_factors": efactors,
            "directions": jax.vmap(directions_at)(lams),
            "v": flat(v),
            "Gv": flat(ggn_vp(params, x, y, v)),
            "kfac_v": flat(fb.kfac_vp(factors, v)),
            "ekfac_v": flat(fb.ekfac_vp(efactors, v)),
        }

    return jax.jit(run)


def solve(M: np.ndarray, lam: float, g: np.ndarray) -> np.ndarray:
    """``(M + lam I)^-1 g`` by Cholesky."""
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(M + lam * np.eye(M.shape[0])), g)


def checkpoint(m: dict, slices, k: int, cg: tuple[int, ...]) -> dict:
    """One checkpoint's cosines (``"cosine"`` at the first damping, ``"sweep"``: one dict per damping),
    matrix errors and checks, from ``measure``'s (host) arrays."""
    G, g, lams = np.asarray(m["G"]), np.asarray(m["g"]), np.asarray(m["lam"])
    P = G.shape[0]
    Q = np.asarray(m["per_example"])
    F = Q.T @ Q / Q.shape[0]
    U_k = scipy.linalg.eigh(G, subset_by_index=[P - k, P - 1])[1]
    diag = np.asarray(m["diag"])
    mats = {
        "diag": np.diag(diag),
        "efisher": F,
        "kfac": kfac_matrix(m["kfac_factors"], slices),
        "ekfac": ekfac_matrix(m["ekfac_factors"], slices),
        "blocks": exact_blocks(G, slices),
    }
    sweep = []
    for i, lam in enumerate(lams):
        exact = solve(G, lam, g)
        dirs = {
            "gradient": g,
            "diag": g / (diag + lam),
            "efisher": solve(F, lam, g),
            "kfac": m["directions"]["kfac"][i],
            "ekfac": m["directions"]["ekfac"][i],
            "blocks": solve(mats["blocks"], lam, g),
            **{f"cg{c}": m["directions"][f"cg{c}"][i] for c in cg},
        }
        sweep.append({name: cosine(d, exact) for name, d in dirs.items()})
    errs = {name: matrix_errors(A, G, U_k) for name, A in mats.items()}
    v = np.asarray(m["v"])
    return {
        "lam": float(lams[0]),
        "trace_over_P": float(np.trace(G) / P),
        "g_on_top_k": float(np.sum((U_k.T @ g) ** 2) / (g @ g)),
        "cosine": sweep[0],
        "sweep": sweep,
        "frobenius": {name: e[0] for name, e in errs.items()},
        "top_k": {name: e[1] for name, e in errs.items()},
        "checks": {
            "kfac_matrix_vs_kfac_vp": rel(mats["kfac"] @ v, m["kfac_v"]),
            "ekfac_matrix_vs_ekfac_vp": rel(mats["ekfac"] @ v, m["ekfac_v"]),
            "ggn_vs_ggn_vp": rel(G @ v, m["Gv"]),
            "ggn_vs_ggn_diag": rel(np.diag(G), diag),
            "per_example_mean_vs_backprop": rel(Q.mean(axis=0), g),
        },
    }


# --- Training runs ---------------------------------------------------------------------------------


def trainer(net: fb.Network, lr: float):
    """A compiled ``(params, opt_state, x, y, steps) -> (params, opt_state)``: ``steps`` full-batch
    Adam steps on ``fb.backprop``'s gradient (``steps`` traced: one compilation)."""
    opt, grad = optax.adam(lr), fb.backprop(net, LOSS)

    def run(params, opt_state, x, y, steps):
        def step(_, state):
            p, s = state
            updates, s = opt.update(grad(p, x, y), s, p)
            return optax.apply_updates(p, updates), s

        return jax.lax.fori_loop(0, steps, step, (params, opt_state))

    return opt, jax.jit(run)


def trajectory(net, tools, x, y, seed: int, steps, dampings, k: int, cg) -> list[dict]:
    """One training run from ``seed``'s initialisation, measured at each checkpoint in ``steps``;
    ``tools = (opt, train, meas)`` from ``trainer`` and ``measure`` (compiled once per network)."""
    key = jax.random.key(seed)
    params = net.init(key, jnp.float64)
    opt, train, meas = tools
    value = fb.value_and_backprop(net, LOSS)
    opt_state, done, rows, slices = opt.init(params), 0, [], layer_slices(params)
    for i, s in enumerate(steps):
        params, opt_state = train(params, opt_state, x, y, s - done)
        done = s
        m = jax.device_get(meas(params, x, y, jnp.asarray(dampings), jax.random.fold_in(key, i)))
        row = checkpoint(m, slices, k, cg)
        logits = net.apply(params, x)
        row.update(
            step=s, loss=float(value(params, x, y)[0]), accuracy=float(jnp.mean(logits.argmax(1) == y))
        )
        rows.append(row)
    return rows


def run(
    n: int = 256,
    hidden: int = 16,
    channels: tuple[int, int] | None = (4, 8),
    steps=(0, 10, 30, 100, 300, 600),
    lr: float = 0.01,
    damping: float = 0.01,
    sweep=(0.001, 0.1, 1.0),
    k: int = 10,
    cg=(10, 50),
    seeds: int = 3,
    seed: int = 0,
) -> dict:
    """Every network's runs: ``{"networks": {name: {"P", "runs": [[row per checkpoint] per seed]}}, ...}``."""
    nets = {"mlp": (mlp(hidden), False)}
    if channels:
        nets["cnn"] = (cnn(*channels), True)
    dampings = [damping, *sweep]
    out = {"n": n, "steps": list(steps), "lr": lr, "damping": damping, "dampings": dampings, "k": k}
    out.update(cg=list(cg), networks={})
    for name, (net, images) in nets.items():
        tools = (*trainer(net, lr), measure(net, tuple(cg)))
        runs = []
        for s in range(seed, seed + seeds):
            x, y = batch(n, s, images)
            # one BLAS thread for the host's dense solves: on a small shared CPU, OpenBLAS's threads
            # contending with XLA's made them 10-20x slower
            with threadpool_limits(limits=1, user_api="blas"):
                runs.append(trajectory(net, tools, x, y, s, steps, dampings, k, tuple(cg)))
        out["networks"][name] = {"P": net.n_params, "runs": runs}
    return out


# --- Summary, claims, table, figures ---------------------------------------------------------------


def stat(r: dict, net: str, field: str, name: str | None = None) -> np.ndarray:
    """``(seeds, checkpoints)`` array of ``row[field][name]`` (or ``row[field]``)."""
    return np.array(
        [
            [row[field] if name is None else row[field][name] for row in run]
            for run in r["networks"][net]["runs"]
        ]
    )


def medians(r: dict) -> dict:
    """Per network: the median over seeds at every checkpoint of each cosine and matrix error."""
    cg = tuple(r["cg"])
    out = {}
    for net in r["networks"]:
        out[net] = {
            "cosine": {d: np.median(stat(r, net, "cosine", d), axis=0).tolist() for d in directions(cg)},
            "frobenius": {a: np.median(stat(r, net, "frobenius", a), axis=0).tolist() for a in MATRICES},
            "top_k": {a: np.median(stat(r, net, "top_k", a), axis=0).tolist() for a in MATRICES},
            "loss": np.median(stat(r, net, "loss"), axis=0).tolist(),
            "accuracy": np.median(stat(r, net, "accuracy"), axis=0).tolist(),
        }
    return out


def claims(r: dict) -> dict[str, bool]:
    nets = list(r["networks"])
    cg = tuple(r["cg"])
    D = len(r["networks"][nets[0]]["runs"]) if nets else 0
    med = medians(r)
    rows = [row for net in nets for run in r["networks"][net]["runs"] for row in run]

    def every(f):
        return bool(rows) and all(bool(f(row)) for row in rows)

    def every_median(f):
        return bool(nets) and all(bool(np.all(f(med[net]))) for net in nets)

    def c(m, d):
        return np.asarray(m["cosine"][d])

    def frob(m, a):
        return np.asarray(m["frobenius"][a])

    def kron(m, j):
        return min(c(m, "kfac")[j], c(m, "ekfac")[j])

    def others_than_cg(m):
        return np.max([c(m, d) for d in directions(())], axis=0)

    last = f"cg{cg[-1]}"
    where = f"({', '.join(nets)}; {D} seeds, every checkpoint)"
    return {
        "the dense K-FAC and EKFAC matrices (blocks permuted to fb.flatten's order) reproduce fb.kfac_vp "
        f"and fb.ekfac_vp (relative <= {TOL:g}) {where}": every(
            lambda w: (
                max(w["checks"]["kfac_matrix_vs_kfac_vp"], w["checks"]["ekfac_matrix_vs_ekfac_vp"]) <= TOL
            )
        ),
        "the dense GGN reproduces fb.ggn_vp and fb.ggn_diag, the per-example gradients average to "
        f"fb.backprop's (relative <= {TOL:g})": every(
            lambda w: (
                max(
                    w["checks"][c]
                    for c in ("ggn_vs_ggn_vp", "ggn_vs_ggn_diag", "per_example_mean_vs_backprop")
                )
                <= TOL
            )
        ),
        f"EKFAC's Frobenius error <= K-FAC's (George et al. 2018; up to {ROUND:g}), every seed and "
        "checkpoint": every(lambda w: w["frobenius"]["ekfac"] <= w["frobenius"]["kfac"] + ROUND),
        "the exact blocks' Frobenius error <= K-FAC's, EKFAC's and the diagonal's (the floor of "
        "block-diagonal approximations), every seed and checkpoint": every(
            lambda w: (
                w["frobenius"]["blocks"] <= min(w["frobenius"][a] for a in ("kfac", "ekfac", "diag")) + ROUND
            )
        ),
        "every cosine lies in [-1, 1], every damping": every(
            lambda w: all(abs(v) <= 1 + ROUND for c in w["sweep"] for v in c.values())
        ),
        f"Hessian-free's cosine rises with the CG steps ({', '.join(map(str, cg))}), medians over seeds at "
        "every checkpoint": every_median(
            lambda m: len(cg) > 1 and np.all(np.diff([c(m, f"cg{i}") for i in cg], axis=0) >= 0)
        ),
        f"... and {cg[-1]} CG steps reach a cosine >= {CG_COSINE:g}, the best of all directions (medians)": (
            every_median(lambda m: (c(m, last) >= CG_COSINE) & (c(m, last) >= others_than_cg(m)))
        ),
        f"at the first checkpoint K-FAC's and EKFAC's cosines beat the gradient's and the diagonal GGN's by "
        f">= {MARGIN:g}, and the exact blocks' beat both (medians)": every_median(
            lambda m: (
                kron(m, 0) >= max(c(m, "gradient")[0], c(m, "diag")[0]) + MARGIN
                and c(m, "blocks")[0] >= max(c(m, "kfac")[0], c(m, "ekfac")[0])
            )
        ),
        f"at the last checkpoint the order is reversed: the gradient's cosine beats K-FAC's and EKFAC's by "
        f">= {LATE_MARGIN:g} (medians)": every_median(
            lambda m: c(m, "gradient")[-1] >= max(c(m, "kfac")[-1], c(m, "ekfac")[-1]) + LATE_MARGIN
        ),
        f"EKFAC's Frobenius error is below the diagonal GGN's by >= {MARGIN:g} at every checkpoint "
        "(medians)": every_median(lambda m: frob(m, "ekfac") <= frob(m, "diag") - MARGIN),
        "the empirical Fisher's Frobenius error rises from the first checkpoint to the last by "
        f">= {EF_RISE:g}, to >= {EF_LATE:g} (medians)": every_median(
            lambda m: frob(m, "efisher")[-1] >= max(EF_LATE, frob(m, "efisher")[0] + EF_RISE)
        ),
        f"Adam lowers the training loss >= {LOSS_DROP:g}x from the first checkpoint to the last (median)": (
            every_median(lambda m: m["loss"][0] >= LOSS_DROP * m["loss"][-1])
        ),
    }


def _cell(values: np.ndarray) -> str:
    """``median [min, max]`` over seeds."""
    return f"{np.median(values):.3f} [{values.min():.2f}, {values.max():.2f}]"


def table(r: dict) -> str:
    cg = tuple(r["cg"])
    dirs = directions(cg)
    lines = [
        f"Digits, N = {r['n']}, full-batch Adam (lr {r['lr']:g}), cross-entropy, float64; "
        f"lam = {r['damping']:g} tr(G)/P; top k = {r['k']}; each cell: median [min, max] over seeds",
    ]
    for net, info in r["networks"].items():
        runs = info["runs"]
        lines += [
            "",
            f"**{net}** (P = {info['P']}, {len(runs)} seeds): cosine with (G + lam I)^-1 g",
            "",
            f"| step | loss | g on top {r['k']} | " + " | ".join(label(d) for d in dirs) + " |",
            "|---:|---:|---:|" + "---:|" * len(dirs),
        ]
        for j, s in enumerate(r["steps"]):
            loss = np.median([run[j]["loss"] for run in runs])
            top = np.median([run[j]["g_on_top_k"] for run in runs])
            cells = [_cell(np.array([run[j]["cosine"][d] for run in runs])) for d in dirs]
            lines.append(f"| {s} | {loss:.3g} | {top:.3f} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"**{net}**: matrix error against G, Frobenius / on the top {r['k']} eigenvectors (medians)",
            "",
            "| step | lam | " + " | ".join(LABELS[a] for a in MATRICES) + " |",
            "|---:|---:|" + "---:|" * len(MATRICES),
        ]
        for j, s in enumerate(r["steps"]):
            lam = np.median([run[j]["lam"] for run in runs])
            cells = [
                f"{np.median([run[j]['frobenius'][a] for run in runs]):.3f} / "
                f"{np.median([run[j]['top_k'][a] for run in runs]):.3f}"
                for a in MATRICES
            ]
            lines.append(f"| {s} | {lam:.2e} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"**{net}**: cosine against the relative damping lam / (tr(G)/P), at the first / last "
            "checkpoint (medians)",
            "",
            "| lam / (tr(G)/P) | " + " | ".join(label(d) for d in dirs) + " |",
            "|---:|" + "---:|" * len(dirs),
        ]
        for i in np.argsort(r["dampings"]):
            cells = [
                " / ".join(
                    f"{np.median(sweep_stat(r, net, d, j)[:, i]):.3f}" for j in (0, len(r["steps"]) - 1)
                )
                for d in dirs
            ]
            lines.append(f"| {r['dampings'][i]:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _xs(r: dict) -> np.ndarray:
    """Checkpoint positions on a log axis (step 0 drawn at 1)."""
    return np.maximum(np.asarray(r["steps"], float), 1.0)


def cosine_figure(r: dict):
    """Cosine with the exact damped GGN direction against the training step, per method (median over
    seeds, the band their range), one panel per network."""
    import matplotlib.pyplot as plt

    nets = list(r["networks"])
    fig, axes = plt.subplots(1, len(nets), figsize=(6.5 * len(nets), 4.6), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for i, d in enumerate(directions(tuple(r["cg"]))):
            v = stat(r, net, "cosine", d)
            ax.plot(_xs(r), np.median(v, axis=0), "o-", color=f"C{i}", label=label(d), ms=4)
            ax.fill_between(_xs(r), v.min(axis=0), v.max(axis=0), color=f"C{i}", alpha=0.15)
        ax.set(
            xscale="log",
            ylim=(min(0.0, ax.get_ylim()[0]), 1.02),
            xlabel="Adam step (0 drawn at 1)",
            ylabel="cosine with (G + lam I)^-1 g",
            title=f"{net}, P = {r['networks'][net]['P']}: direction vs the exact one",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"median over seeds (band: min-max); lam = {r['damping']:g} tr(G)/P", fontsize=10)
    fig.tight_layout()
    return fig


def matrix_figure(r: dict):
    """Relative matrix error against the exact GGN against the step: Frobenius (solid) and on the top-k
    eigenvectors (dashed), median over seeds, one panel per network."""
    import matplotlib.pyplot as plt

    nets = list(r["networks"])
    fig, axes = plt.subplots(1, len(nets), figsize=(6.5 * len(nets), 4.6), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for i, a in enumerate(MATRICES):
            color = f"C{i + 1}"
            ax.plot(
                _xs(r), np.median(stat(r, net, "frobenius", a), axis=0), "o-", color=color, label=LABELS[a]
            )
            ax.plot(_xs(r), np.median(stat(r, net, "top_k", a), axis=0), "s--", color=color, ms=4)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="Adam step (0 drawn at 1)",
            ylabel="relative error against G",
            title=f"{net}: ||A - G||_F / ||G||_F (solid), on top-{r['k']} eigenvectors (dashed)",
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_stat(r: dict, net: str, d: str, j: int) -> np.ndarray:
    """``(seeds, dampings)``: direction ``d``'s cosine at checkpoint ``j`` for every damping."""
    return np.array([[c[d] for c in run[j]["sweep"]] for run in r["networks"][net]["runs"]])


def damping_figure(r: dict):
    """Cosine with the exact direction against the relative damping, at the first and the last
    checkpoint (median over seeds), one column per network."""
    import matplotlib.pyplot as plt

    nets, order = list(r["networks"]), np.argsort(r["dampings"])
    lams = np.asarray(r["dampings"])[order]
    fig, axes = plt.subplots(2, len(nets), figsize=(6.5 * len(nets), 8), squeeze=False)
    for col, net in enumerate(nets):
        for row, j in enumerate((0, len(r["steps"]) - 1)):
            ax = axes[row, col]
            for i, d in enumerate(directions(tuple(r["cg"]))):
                med = np.median(sweep_stat(r, net, d, j), axis=0)[order]
                ax.plot(lams, med, "o-", color=f"C{i}", label=label(d), ms=4)
            ax.set(
                xscale="log",
                xlabel="lam / (tr(G) / P)",
                ylabel="cosine with (G + lam I)^-1 g",
                title=f"{net}, Adam step {r['steps'][j]}",
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle("the damping decides how far each approximation is from the exact direction (medians)")
    fig.tight_layout()
    return fig


def _listed(p, text: str, name: str, kind) -> tuple:
    """``text`` (``"1,2,3"``) as a tuple of ``kind``; a parser error naming ``name`` otherwise."""
    try:
        return tuple(kind(t) for t in text.split(",") if t.strip())
    except ValueError:
        p.error(f"{name} must be comma-separated {kind.__name__}s; got {text!r}")


def settings(p, args) -> tuple[int, int] | None:
    """Fill in the defaults (full or ``--quick``) and check every option, before anything is compiled;
    return the CNN's channels (``None``: no CNN). A bad value is a parser error naming the option."""
    q = args.quick
    args.n = args.n if args.n is not None else (QUICK["n"] if q else 256)
    args.hidden = args.hidden if args.hidden is not None else (QUICK["hidden"] if q else 16)
    steps = (0, 10, 30, 100, 300, 600)
    args.steps = _listed(p, args.steps, "--steps", int) if args.steps else (QUICK["steps"] if q else steps)
    args.cg = _listed(p, args.cg, "--cg", int)
    sweep = QUICK["sweep"] if q else (0.001, 0.1, 1.0)
    args.sweep = _listed(p, args.sweep, "--sweep", float) if args.sweep is not None else sweep
    channels = None if q or not args.channels else _listed(p, args.channels, "--channels", int)

    P = mlp(max(args.hidden, 1)).n_params
    if channels is not None and len(channels) == 2 and min(channels) >= 1:
        P = min(P, cnn(*channels).n_params)

    def increasing(v, least):
        return len(v) >= 2 and v[0] >= least and all(a < b for a, b in zip(v, v[1:]))

    bad = [
        (not 2 <= args.n <= 1797, "--n must be an integer in 2..1797 (the digits)", args.n),
        (args.hidden < 1, "--hidden must be >= 1", args.hidden),
        (
            channels is not None and (len(channels) != 2 or min(channels) < 1),
            "--channels must be two integers >= 1, or ''",
            args.channels,
        ),
        (not increasing(args.steps, 0), "--steps must be >= 2 increasing step counts >= 0", args.steps),
        (not increasing(args.cg, 1), "--cg must be >= 2 increasing CG step counts >= 1", args.cg),
        (not args.lr > 0, "--lr must be > 0", args.lr),
        (not args.damping > 0, "--damping must be > 0", args.damping),
        (not all(d > 0 for d in args.sweep), "--sweep must be dampings > 0", args.sweep),
        (not 1 <= args.k < P, f"--k must be >= 1 and below P = {P}", args.k),
        (args.seeds < 1, "--seeds must be >= 1", args.seeds),
    ]
    for failed, message, value in bad:
        if failed:
            p.error(f"{message}; got {value!r}")
    return channels


def main(argv=None) -> dict:
    p = common.parser(__doc__, "curvature_approximations")
    p.add_argument("--n", type=int, default=None, help="digits in the batch (default 256, quick 64)")
    p.add_argument("--hidden", type=int, default=None, help="the MLP's hidden width (default 16, quick 8)")
    p.add_argument("--channels", default="4,8", help="the CNN's two conv widths; '' or --quick: no CNN")
    p.add_argument(
        "--steps", default=None, help="checkpoints, Adam steps (default 0,10,30,100,300,600; quick 0,30,150)"
    )
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate")
    p.add_argument(
        "--damping", type=float, default=0.01, help="lam relative to tr(G)/P (the table's, the claims')"
    )
    p.add_argument(
        "--sweep",
        default=None,
        help="further relative dampings, cosines only (default 0.001,0.1,1; quick 0.1)",
    )
    p.add_argument("--k", type=int, default=10, help="top eigenvectors of G for the second matrix error")
    p.add_argument("--cg", default="10,50", help="CG step counts of the Hessian-free directions")
    p.add_argument(
        "--seeds", type=int, default=3, help="training runs per network (seeds seed, seed + 1, ...)"
    )
    args = p.parse_args(argv)
    channels = settings(p, args)
    t0 = time.perf_counter()
    r = run(
        args.n,
        args.hidden,
        channels,
        args.steps,
        args.lr,
        args.damping,
        args.sweep,
        args.k,
        args.cg,
        args.seeds,
        args.seed,
    )
    metrics = {**{key: v for key, v in r.items() if key != "networks"}, "medians": medians(r)}
    metrics["networks"] = r["networks"]
    figures = {"cosines": cosine_figure(r), "matrix_errors": matrix_figure(r), "damping": damping_figure(r)}
    return common.finish("curvature_approximations", args, t0, metrics, claims(r), figures, table(r))


if __name__ == "__main__":
    main()
