"""The exact Hessian diagonal and the top eigenvalues of a small CNN by second-order backpropagation,
against autodiff, and the exact diagonal against P Hessian-vector products in time.

Network (channels last, ``x: (N, 8, 8, 1)``): ``Conv2D(c, 3x3, SAME)``, relu, ``AvgPool2D(2x2)``,
a residual block ``y = x + tanh(Conv2D(c, 3x3, SAME)(x))`` (He, Zhang, Ren & Sun 2016),
``MaxPool2D(2x2)``, ``Flatten``, ``Dense(10)`` (logits), the batch-mean softmax cross-entropy on
``--n`` of scikit-learn's 8x8 digits (pixels in [0, 1], drawn by the seed), float64. Each of
``--draws`` parameter draws (Glorot weights; biases ``N(0, 0.1^2)``, so that no unit sits exactly at
relu's kink or in a max-pooling tie: the digits' background is exactly 0) is measured:

- ``fb.hessian_diag`` (the exact diagonal by second-order backpropagation, Bishop 1992; Dangel,
  Harmeling & Hennig 2020: ``A_in = J^T H_out J + sum_k g_k d2y_k/dx2`` layer by layer, the
  residual block's cross terms ``H + J^T H + H J`` included; the convolution's ``J^T H J`` by its
  im2col backward applied to the columns of ``H``), ``fb.ggn_diag`` (the same without the curvature
  terms, Schraudolph 2002) and ``fb.hessian_blocks`` (each layer's own block), with
  ``chunk_size=--chunk`` examples at a time (memory ``O(chunk n^2)`` for a layer of ``n`` outputs),
  against ``jnp.diag`` and the diagonal blocks of the dense ``fb.hessian`` / ``fb.ggn``
  (``jax.hessian`` and Jacobians: autodiff);
- ``fb.hvp(net, loss, method="backprop")`` (Pearlmutter's 1994 R-operator on the hand-written
  passes) against ``H v`` of the dense Hessian, and ``--iters`` Lanczos steps on it
  (``fb.lanczos``, Lanczos 1950): the top ``--k`` Ritz values and the bottom one against
  ``eigvalsh`` of the dense Hessian;
- time: the exact diagonal against the diagonal read from ``P`` products ``e_i^T H e_i``
  (``fb.hvp(method="backprop")`` along every unit vector, ``jax.lax.map`` over the basis,
  ``--hvp-batch`` per ``vmap``), both compiled, in ``--rounds`` interleaved rounds; the ratio is the
  median of the per-round ratios. The exact diagonal's cost grows with the square of each layer's
  output size (second-order backprop carries a per-example ``H: (N, n, n)`` over the flattened
  feature map), the P HVPs' with P, so on this small net it wins by a small factor only;
  ``benchmarks/bench_cnn.py`` measures both at P ~ 1e4.

    python experiments/cnn_curvature.py [--n 64] [--channels 4] [--draws 3] [--k 3] [--iters 60]
        [--chunk 1] [--hvp-batch 32] [--rounds 7] [--seed 0] [--quick] [--out runs/cnn_curvature]

Claims tested, for every parameter draw: the exact Hessian diagonal, the exact Gauss-Newton
diagonal and each layer's exact Hessian block equal autodiff's (relative <= 1e-10), and the blocks'
diagonals the exact diagonal; the hand-written HVP equals ``H v`` (relative <= 1e-10) and the
diagonal read from P of them equals the exact one (relative <= 1e-10); the Gauss-Newton diagonal is
non-negative while the Hessian's has negative entries (from tanh's curvature term
``sum_k g_k d2y_k/dx2``, which the Gauss-Newton matrix leaves out); the top-k Lanczos Ritz values
equal the top-k dense eigenvalues (relative <= 1e-6), the bottom one the smallest eigenvalue
(within 1e-6 lambda_max), and it is negative (the Hessian is indefinite); the exact diagonal is at
least 2x faster than P HVPs (the median of the per-round ratios of each draw, quick and full).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402

import fbackprop as fb  # noqa: E402

LOSS = "cross_entropy"
CLASSES = 10
TOL = 1e-10
LANCZOS_TOL = 1e-6
SPEEDUP = 2.0
#: (n, draws, rounds) of --quick.
QUICK = (16, 2, 5)


def network(channels: int = 4) -> fb.Network:
    """conv -> relu -> avg pool -> residual(conv -> tanh) -> max pool -> flatten -> dense(10), on 8x8x1."""
    L = fb.layers
    return fb.serial(
        L.Conv2D(channels, (3, 3), padding="SAME"),
        L.Activation("relu"),
        L.AvgPool2D((2, 2)),
        L.Residual(L.Conv2D(channels, (3, 3), padding="SAME"), L.Activation("tanh")),
        L.MaxPool2D((2, 2)),
        L.Flatten(),
        L.Dense(CLASSES),
        input_shape=(8, 8, 1),
    )


def batch(n: int, seed: int):
    """``n`` digits drawn by ``seed``: images ``(n, 8, 8, 1)`` in [0, 1] (float64), labels ``(n,)``."""
    x, labels = fb.data.digits(np.float64)
    idx = np.random.default_rng(seed).choice(x.shape[0], n, replace=False)
    return jnp.asarray(x[idx].reshape(n, 8, 8, 1)), jnp.asarray(labels[idx])


def draw_params(net: fb.Network, key):
    """Glorot weights (``net.init``) with every bias drawn ``N(0, 0.1^2)``."""
    params = net.init(key, jnp.float64)
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    out = [
        0.1 * jax.random.normal(k, leaf.shape, leaf.dtype) if path[-1].key == "b" else leaf
        for k, (path, leaf) in zip(keys, leaves)
    ]
    return jax.tree.unflatten(jax.tree.structure(params), out)


def leaf_names(net: fb.Network, params) -> list[str]:
    """``"layer 1 Conv2D W"`` for every leaf of ``params``, in ``fb.flatten``'s order."""
    names = net.layer_names()
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        node = names
        for key in path[:-1]:
            node = node[key.idx]
        out.append(f"{node} {path[-1].key}")
    return out


def rel(a, b) -> float:
    """``max |a - b| / max(max |a|, max |b|)`` (``fb.compare``'s definition), in NumPy float64."""
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))


def curvature(net: fb.Network, chunk: int, iters: int):
    """A compiled ``(params, x, y, key) -> dict``: the dense Hessian and GGN (autodiff), the exact
    GGN diagonal and the Hessian blocks (second-order backprop; the Hessian diagonal is
    ``timed``'s), ``H v`` both ways for a random ``v``, and the Ritz values of ``iters`` Lanczos
    steps on the hand-written HVP (ascending)."""
    hess, ggn = fb.hessian(net, LOSS), fb.ggn(net, LOSS)
    gd = fb.ggn_diag(net, LOSS, chunk_size=chunk)
    blocks, hvp = fb.hessian_blocks(net, LOSS, chunk_size=chunk), fb.hvp(net, LOSS, method="backprop")

    def measure(params, x, y, key):
        theta, unflatten = fb.flatten(params)
        H = hess(params, x, y)
        v = jax.random.normal(jax.random.fold_in(key, 0), theta.shape, theta.dtype)
        lz = fb.lanczos(lambda u: hvp(params, x, y, u), params, jax.random.fold_in(key, 1), iters)
        return {
            "H": H,
            "G": ggn(params, x, y),
            "ggn_diag": fb.flatten(gd(params, x, y))[0],
            "blocks": jax.tree.leaves(blocks(params, x, y)),
            "Hv_backprop": fb.flatten(hvp(params, x, y, unflatten(v)))[0],
            "Hv_dense": H @ v,
            "ritz": lz.ritz()[0],
        }

    return jax.jit(measure)


def timed(net: fb.Network, x, y, chunk: int, hvp_batch: int):
    """The two compiled routes to ``diag(H)`` as ``params -> (P,)``: the exact diagonal, and the
    entries ``e_i^T H e_i`` of ``P`` hand-written HVPs (``lax.map`` over the basis, ``hvp_batch``
    per vmap)."""
    hd, hvp = fb.hessian_diag(net, LOSS, chunk_size=chunk), fb.hvp(net, LOSS, method="backprop")
    P = net.n_params

    def exact(params):
        return fb.flatten(hd(params, x, y))[0]

    def from_hvps(params):
        theta, unflatten = fb.flatten(params)

        def entry(i):
            e = jax.nn.one_hot(i, P, dtype=theta.dtype)
            return fb.flatten(hvp(params, x, y, unflatten(e)))[0][i]

        return jax.lax.map(entry, jnp.arange(P), batch_size=min(hvp_batch, P))

    return jax.jit(exact), jax.jit(from_hvps)


def interleaved(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of one call of each zero-argument function per round, the order alternating by round."""
    names, out = list(fns), {k: [] for k in fns}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name]())
            out[name].append(time.perf_counter() - t0)
    return out


def block_offsets(params) -> list[tuple[int, int]]:
    """``(start, stop)`` in ``fb.flatten``'s order of each layer's parameters (W and b jointly)."""
    sizes = [sum(leaf.size for leaf in jax.tree.leaves(d)) for d in _param_dicts(params)]
    stops = np.cumsum(sizes)
    return [(int(s - n), int(s)) for s, n in zip(stops, sizes)]


def _param_dicts(params) -> list[dict]:
    """The ``{"W", "b"}`` dicts of ``params``, nested blocks opened, in order."""
    if isinstance(params, dict):
        return [params]
    return [d for p in params for d in _param_dicts(p)]


def run(
    n: int = 64,
    channels: int = 4,
    draws: int = 3,
    k: int = 3,
    iters: int = 60,
    chunk: int = 1,
    hvp_batch: int = 32,
    rounds: int = 7,
    seed: int = 0,
) -> dict:
    net = network(channels)
    x, y = batch(n, seed)
    key = jax.random.key(seed)
    measure = curvature(net, chunk, iters)
    exact, from_hvps = timed(net, x, y, chunk, hvp_batch)
    rows = []
    for d in range(draws):
        params = draw_params(net, jax.random.fold_in(key, 100 + d))
        m = {
            name: np.asarray(v) if not isinstance(v, list) else [np.asarray(b) for b in v]
            for name, v in (measure(params, x, y, jax.random.fold_in(key, 200 + d)).items())
        }
        H, G = m["H"], m["G"]
        dense_eigs = np.linalg.eigvalsh(H)
        d_hvps = np.asarray(from_hvps(params))
        hdiag = np.asarray(exact(params))  # compiled before the timing
        calls = {"exact": functools.partial(exact, params), "hvps": functools.partial(from_hvps, params)}
        times = interleaved(calls, rounds)
        ratios = [h / e for h, e in zip(times["hvps"], times["exact"])]
        block_err = [rel(B, H[a:b, a:b]) for B, (a, b) in zip(m["blocks"], block_offsets(params))]
        ritz = m["ritz"]
        rows.append(
            {
                "hessian_diag_vs_autodiff": rel(hdiag, np.diag(H)),
                "ggn_diag_vs_autodiff": rel(m["ggn_diag"], np.diag(G)),
                "blocks_vs_autodiff": block_err,
                "blocks_diag_vs_hessian_diag": rel(np.concatenate([np.diag(B) for B in m["blocks"]]), hdiag),
                "hvp_vs_dense": rel(m["Hv_backprop"], m["Hv_dense"]),
                "hvps_diag_vs_exact": rel(d_hvps, hdiag),
                "ggn_diag_min_over_max": float(m["ggn_diag"].min() / m["ggn_diag"].max()),
                "hessian_diag_negative": int(np.sum(hdiag < 0)),
                "top_dense": dense_eigs[::-1][:k],
                "top_lanczos": ritz[::-1][:k],
                "top_rel_err": np.abs(ritz[::-1][:k] - dense_eigs[::-1][:k]) / np.abs(dense_eigs[::-1][:k]),
                "bottom_dense": float(dense_eigs[0]),
                "bottom_lanczos": float(ritz[0]),
                "bottom_err_over_max": float(abs(ritz[0] - dense_eigs[0]) / dense_eigs[-1]),
                "exact_s": float(np.median(times["exact"])),
                "hvps_s": float(np.median(times["hvps"])),
                "speedup": float(np.median(ratios)),
                "speedup_spread": [float(min(ratios)), float(max(ratios))],
                "eigs": dense_eigs,
                "ritz": ritz,
                "hessian_diag": hdiag,
                "ggn_diag": m["ggn_diag"],
                "autodiff_diag": np.diag(H),
            }
        )
    return {
        "n": n,
        "channels": channels,
        "P": net.n_params,
        "k": k,
        "iters": iters,
        "chunk": chunk,
        "rounds": rounds,
        "names": leaf_names(net, params),
        "leaf_sizes": [int(leaf.size) for leaf in jax.tree.leaves(params)],
        "rows": rows,
    }


def claims(r: dict) -> dict[str, bool]:
    rows = r["rows"]

    def every(f):
        return bool(rows) and all(bool(f(row)) for row in rows)

    k, D = r["k"], len(rows)
    return {
        f"fb.hessian_diag equals jnp.diag(fb.hessian) (relative <= {TOL:g}), all {D} draws": every(
            lambda w: w["hessian_diag_vs_autodiff"] <= TOL
        ),
        f"fb.ggn_diag equals jnp.diag(fb.ggn) (relative <= {TOL:g})": every(
            lambda w: w["ggn_diag_vs_autodiff"] <= TOL
        ),
        "fb.hessian_blocks equals the diagonal blocks of fb.hessian, every layer "
        f"(relative <= {TOL:g})": every(lambda w: max(w["blocks_vs_autodiff"]) <= TOL),
        f"... and the blocks' diagonals equal fb.hessian_diag (relative <= {TOL:g})": every(
            lambda w: w["blocks_diag_vs_hessian_diag"] <= TOL
        ),
        f'fb.hvp(method="backprop") equals H v of the dense Hessian (relative <= {TOL:g})': every(
            lambda w: w["hvp_vs_dense"] <= TOL
        ),
        f"the diagonal read from P HVPs e_i^T H e_i equals fb.hessian_diag (relative <= {TOL:g})": every(
            lambda w: w["hvps_diag_vs_exact"] <= TOL
        ),
        "the Gauss-Newton diagonal is non-negative (min >= -1e-12 max) while the Hessian's has "
        "negative entries": every(
            lambda w: w["ggn_diag_min_over_max"] >= -1e-12 and w["hessian_diag_negative"] > 0
        ),
        f"the top {k} Lanczos Ritz values (hand-written HVP) equal the top {k} dense eigenvalues "
        f"(relative <= {LANCZOS_TOL:g})": every(lambda w: np.max(w["top_rel_err"]) <= LANCZOS_TOL),
        f"the bottom Ritz value equals the smallest eigenvalue (within {LANCZOS_TOL:g} lambda_max), "
        "and it is negative (the Hessian is indefinite)": every(
            lambda w: w["bottom_err_over_max"] <= LANCZOS_TOL and w["bottom_dense"] < 0
        ),
        f"the exact diagonal is >= {SPEEDUP:g}x faster than P HVPs (median of per-round ratios), "
        "every draw": every(lambda w: w["speedup"] >= SPEEDUP),
    }


def table(r: dict) -> str:
    k = r["k"]
    lines = [
        f"CNN on 8x8 digits, N = {r['n']}, {r['channels']} channels, P = {r['P']}, cross-entropy, float64; "
        f"chunk_size {r['chunk']}; Lanczos {r['iters']} steps; {r['rounds']} timing rounds",
        "",
        "| draw | diag H vs autodiff | diag G vs autodiff | blocks vs autodiff | Hv vs dense "
        "| P HVPs vs exact "
        f"| top {k} eigenvalues (dense) | Lanczos rel err (max) | lambda_min dense / Lanczos "
        "| exact diag ms | P HVPs ms | speedup (spread) |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for d, w in enumerate(r["rows"]):
        top = ", ".join(f"{v:.4g}" for v in w["top_dense"])
        lines.append(
            f"| {d} | {w['hessian_diag_vs_autodiff']:.1e} | {w['ggn_diag_vs_autodiff']:.1e} | "
            f"{max(w['blocks_vs_autodiff']):.1e} | {w['hvp_vs_dense']:.1e} | {w['hvps_diag_vs_exact']:.1e} | "
            f"{top} | {np.max(w['top_rel_err']):.1e} | {w['bottom_dense']:.4g} / {w['bottom_lanczos']:.4g} | "
            f"{1e3 * w['exact_s']:.2f} | {1e3 * w['hvps_s']:.1f} | {w['speedup']:.1f} "
            f"({w['speedup_spread'][0]:.1f}-{w['speedup_spread'][1]:.1f}) |"
        )
    return "\n".join(lines)


def layer_of_entry(r: dict) -> np.ndarray:
    """The leaf index (into ``r["names"]``) of every flat parameter."""
    return np.repeat(np.arange(len(r["leaf_sizes"])), r["leaf_sizes"])


def diagonal_figure(r: dict, d: int = 0):
    """Left: |exact diag H| against |autodiff diag H| per parameter, by leaf. Right: per leaf, the
    exact Hessian and Gauss-Newton diagonals (median and range of |entry|, log)."""
    import matplotlib.pyplot as plt

    w, leaf = r["rows"][d], layer_of_entry(r)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    a, h = np.abs(w["autodiff_diag"]), np.abs(w["hessian_diag"])
    lo = max(1e-14, min(a[a > 0].min(), h[h > 0].min()))
    for i, name in enumerate(r["names"]):
        on = leaf == i
        ax1.scatter(np.maximum(a[on], lo), np.maximum(h[on], lo), s=8, alpha=0.7, label=name)
    ax1.plot([lo, a.max()], [lo, a.max()], "k--", lw=1)
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="|diag H|, autodiff (jnp.diag(fb.hessian))",
        ylabel="|diag H|, second-order backprop (fb.hessian_diag)",
        title=f"one point per parameter; max relative difference {w['hessian_diag_vs_autodiff']:.1e}",
    )
    ax1.legend(fontsize=7)
    pos = np.arange(len(r["names"]))
    for off, key, label, color in (
        (-0.15, "hessian_diag", "diag H", "C0"),
        (0.15, "ggn_diag", "diag G", "C1"),
    ):
        vals = np.abs(w[key])
        med = [np.median(vals[leaf == i]) for i in pos]
        lo_i = [max(vals[leaf == i].min(), 1e-14) for i in pos]
        hi_i = [vals[leaf == i].max() for i in pos]
        ax2.errorbar(
            pos + off,
            med,
            yerr=[np.subtract(med, lo_i), np.subtract(hi_i, med)],
            fmt="o",
            color=color,
            capsize=3,
            label=f"|{label}| median, min-max",
        )
    neg = [int(np.sum(w["hessian_diag"][leaf == i] < 0)) for i in pos]
    ax2.set_xticks(pos, [f"{n}\n({c} < 0)" for n, c in zip(r["names"], neg)], fontsize=7, rotation=20)
    ax2.set(yscale="log", ylabel="|diagonal entry|", title="exact Hessian vs Gauss-Newton diagonal per leaf")
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"CNN (P = {r['P']}) on {r['n']} digits: the exact Hessian diagonal by second-order backprop",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def eigenvalue_figure(r: dict):
    """Left: the dense spectrum (sorted) of draw 0 with the Lanczos Ritz values. Right: the relative
    error of the top-k Ritz values, every draw; and the time of the two routes to the diagonal."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.5))
    w = r["rows"][0]
    eigs = w["eigs"][::-1]
    ax1.plot(np.arange(1, eigs.size + 1), eigs, ".", ms=3, color="0.5", label="eigvalsh(fb.hessian)")
    ritz = w["ritz"][::-1]
    ax1.plot(
        np.concatenate([np.arange(1, r["k"] + 1), [eigs.size]]),
        np.r_[ritz[: r["k"]], ritz[-1]],
        "x",
        color="C3",
        ms=8,
        label=f"Lanczos ({r['iters']} steps, hand-written HVP)",
    )
    ax1.set(
        xscale="log",
        yscale="symlog",
        xlabel="index (descending)",
        ylabel="eigenvalue (symlog)",
        title="Hessian spectrum, draw 0",
    )
    ax1.legend(fontsize=8)
    for d, row in enumerate(r["rows"]):
        ax2.semilogy(np.arange(1, r["k"] + 1), np.maximum(row["top_rel_err"], 1e-17), "o-", label=f"draw {d}")
    ax2.axhline(LANCZOS_TOL, color="k", ls="--", lw=1, label="claimed bound")
    ax2.set(
        xticks=np.arange(1, r["k"] + 1),
        xlabel="eigenvalue index (descending)",
        ylabel="|Ritz - dense| / |dense|",
        title="Top eigenvalues: Lanczos vs dense",
    )
    ax2.legend(fontsize=8)
    D = np.arange(len(r["rows"]))
    ax3.bar(D - 0.2, [1e3 * w["exact_s"] for w in r["rows"]], 0.4, label="fb.hessian_diag (exact)")
    ax3.bar(D + 0.2, [1e3 * w["hvps_s"] for w in r["rows"]], 0.4, label=f"P = {r['P']} HVPs")
    for d, w in enumerate(r["rows"]):
        ax3.text(d, 1e3 * w["hvps_s"], f"{w['speedup']:.1f}x", ha="center", va="bottom", fontsize=8)
    ax3.set(xticks=D, xlabel="draw", ylabel="ms per diagonal (median)", title="Time of the diagonal")
    ax3.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "cnn_curvature")
    p.add_argument("--n", type=int, default=None, help="digits in the batch (default 64, quick 16)")
    p.add_argument("--channels", type=int, default=4, help="channels of both convolutions")
    p.add_argument("--draws", type=int, default=None, help="parameter draws measured (default 3, quick 2)")
    p.add_argument("--k", type=int, default=3, help="top eigenvalues compared")
    p.add_argument("--iters", type=int, default=60, help="Lanczos steps")
    p.add_argument(
        "--chunk",
        type=int,
        default=1,
        help="examples per chunk of second-order backprop (1: the fastest here)",
    )
    p.add_argument("--hvp-batch", type=int, default=32, help="unit vectors per vmap of the P HVPs")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 7, quick 5)")
    args = p.parse_args(argv)
    qn, qd, qr = QUICK
    args.n = args.n or (qn if args.quick else 64)
    args.draws = args.draws or (qd if args.quick else 3)
    args.rounds = args.rounds or (qr if args.quick else 7)
    t0 = time.perf_counter()
    r = run(
        args.n,
        args.channels,
        args.draws,
        args.k,
        args.iters,
        args.chunk,
        args.hvp_batch,
        args.rounds,
        args.seed,
    )
    big = ("eigs", "ritz", "hessian_diag", "ggn_diag", "autodiff_diag")
    metrics = {
        **{key: v for key, v in r.items() if key != "rows"},
        "rows": [{key: v for key, v in w.items() if key not in big} for w in r["rows"]],
    }
    figures = {"diagonal": diagonal_figure(r), "eigenvalues": eigenvalue_figure(r)}
    return common.finish("cnn_curvature", args, t0, metrics, claims(r), figures, table(r))


if __name__ == "__main__":
    main()
