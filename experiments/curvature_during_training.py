"""Full-batch gradient descent raises the Hessian's top eigenvalue to 2/eta and holds it there (edge of
stability).

Cohen, Kaur, Li, Kolter & Talwalkar (2021), "Gradient descent on neural networks typically occurs
at the edge of stability" (ICLR), report that with full-batch gradient descent at rate ``eta`` the
sharpness ``lambda_max`` (the largest eigenvalue of the Hessian of the training loss) first rises
("progressive sharpening") and then hovers at about ``2 / eta``, the value above which gradient
descent on a quadratic with that curvature would diverge, while the loss keeps falling, though not
monotonically. This script measures it on one small problem; it claims only what it measures there.

Problem: ``y = sin(x)`` on ``--n`` evenly spaced points of [-pi, pi] (``fb.data.sine``), the net
``fb.mlp([1, w, w, 1], activation="tanh")`` (``--width w``), ``C = 1/(2N) sum (yhat - y)^2``
(squared error), float64, every rate from the same initial parameters. Full-batch gradient descent
``theta <- theta - eta dC/dtheta`` (``optax.sgd(eta)``) runs in segments of ``--every`` steps
(``fb.train_many(..., mode="batch")``, all rates vmapped in one compiled call); before each segment
and after the last:

- sharpness ``lambda_max(H)``: Lanczos on the Hessian-vector product,
  ``fb.eigenvalues(lambda v: fb.hvp(net, loss)(params, x, y, v), params, key, k=1)``;
- trace ``tr H``: the exact diagonal of the Hessian summed, ``fb.hessian_diag`` (second-order
  backpropagation, Bishop 1992; Dangel, Harmeling & Hennig 2020: ``A^{l-1} = (W^l)^T H^l W^l``,
  ``H^l = f'(z^l) f'(z^l)^T * A^l + diag(f''(z^l) * dC/da^l)``).

On this problem the sharpness overshoots 2/eta, then falls back below it with a spike in the loss,
a few times, before it settles at 2/eta (see the plot). At initialisation and at the end both
measurements are checked against the dense Hessian (``fb.hessian``, ``eigvalsh``) and against the
Hutchinson estimate (``fb.hutchinson_trace``). A second plot sets the exact Hessian diagonal beside
the exact Gauss-Newton diagonal (``fb.ggn_diag``: the same recursion without the ``f''`` term) at
initialisation and at the end; for squared error the two differ by the residual-weighted term
``sum_n (yhat_n - y_n) d2 yhat_n / dtheta^2 / N``, which shrinks as the fit improves.

    python experiments/curvature_during_training.py [--rates 0.2,0.15,0.1,0.05] [--steps 2000]
        [--every 20] [--n 64] [--width 16] [--seed 0] [--quick] [--out runs/curvature_during_training]

Claims tested: no run diverges; every rate sharpens (lambda_max rises to at least 1.25x its
initial value); each rate above the control reaches 2/eta (max lambda_max >= 0.95 (2/eta)) and
then hovers there (median of the last half of the measurements within 10% of 2/eta, none above
1.5 (2/eta)) while its loss is not monotone yet falls at least tenfold; the smallest (control) rate
stays below 0.9 (2/eta) with a loss that falls at every step; at initialisation and at the end the
Lanczos top eigenvalue equals the dense eigvalsh one (relative 1e-6), the exact trace equals the
dense trace (relative 1e-10) and the Hutchinson estimate lies within 4 standard errors of it; the
Hessian and Gauss-Newton diagonals differ less at the end than at initialisation for every rate.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import fbackprop as fb  # noqa: E402
from fbackprop.status import Status  # noqa: E402

DIVERGED = Status.DIVERGED

import common  # noqa: E402

LOSS = "squared_error"
#: (rates, steps) of --quick: the two largest rates reach the edge within a few hundred steps.
QUICK = ((0.2, 0.15, 0.05), 600)


def problem(n: int, width: int, seed: int):
    """``y = sin(x)``, ``x, y: (n, 1)``; the tanh net ``1 -> width -> width -> 1`` and its initial
    parameters."""
    x, y = fb.data.sine(n, dtype=np.float64)
    net = fb.mlp([1, width, width, 1], activation="tanh", output="identity")
    return net, net.init(jax.random.key(seed), jnp.float64), jnp.asarray(x), jnp.asarray(y)


def flat_sum(tree) -> jax.Array:
    """Sum of every entry of a pytree (the trace, from a diagonal shaped like params)."""
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


def curvature(net, num_iter: int = 30):
    """A compiled ``(stacked params, x, y, key) -> (lambda_max (K,), tr H (K,))`` over K stacked runs.

    ``lambda_max``: top Ritz value of ``num_iter`` Lanczos steps on ``fb.hvp`` (forward-over-reverse);
    ``tr H``: the exact diagonal from second-order backprop (``fb.hessian_diag``), summed.
    """
    hvp, diag = fb.hvp(net, LOSS), fb.hessian_diag(net, LOSS)

    def sharpness_and_trace(params, x, y, key):
        lam, _ = fb.eigenvalues(lambda v: hvp(params, x, y, v), params, key, k=1, num_iter=num_iter)
        return lam[0], flat_sum(diag(params, x, y))

    return jax.jit(jax.vmap(sharpness_and_trace, in_axes=(0, None, None, None)))


def trajectory(net, params0, x, y, rates, steps: int, every: int, key) -> dict:
    """Gradient descent at each rate for ``steps`` steps, the curvature measured every ``every`` steps.

    ``steps`` is a multiple of ``every``. Returns ``loss (K, steps + 1)`` (C before each step, and
    after the last), ``sharpness`` and ``trace`` ``(K, M + 1)`` at steps ``measured_at = 0, every,
    ..., steps``, the final stacked params, ``diverged (K,)`` (whether ``fb.train_many`` stopped a
    run as diverged) and ``join_gap``: the largest difference between one segment's last loss and
    the next one's first, both at the same params (0 when the segments join up).
    """
    K = len(rates)
    params = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (K, *leaf.shape)), params0)
    measure = curvature(net)
    hyper = jnp.asarray(rates, jnp.float64)
    losses, sharp, trace, diverged, join_gap, last = [], [], [], np.zeros(K, bool), 0.0, None
    segments = steps // every
    for s in range(segments + 1):
        lam, tr = measure(params, x, y, jax.random.fold_in(key, s))
        sharp.append(np.asarray(lam)), trace.append(np.asarray(tr))
        if s == segments:
            break
        r = fb.train_many(net, LOSS, params, x, y, optax.sgd, hyper=hyper, epochs=every, mode="batch")
        params = r.params
        diverged |= np.asarray(r.status) == DIVERGED
        loss = np.asarray(r.history.loss)  # (K, every + 1): C before each step, and after
        if last is not None:  # the same params: the two segments must agree
            join_gap = max(join_gap, float(np.max(np.abs(loss[:, 0] - last[:, 0]))))
        losses.append(loss[:, :-1])
        last = loss[:, -1:]
    loss = np.concatenate([*losses, last], axis=1)
    return {
        "rates": np.asarray(rates, float),
        "loss": loss,
        "measured_at": np.arange(segments + 1) * every,
        "sharpness": np.stack(sharp, axis=1),
        "trace": np.stack(trace, axis=1),
        "params": params,
        "diverged": diverged,
        "join_gap": join_gap,
    }


def dense_checks(net, n_probes: int):
    """A compiled ``(stacked params, x, y, keys) ->`` per run: the top eigenvalue and trace of the dense
    ``fb.hessian`` (``eigvalsh``), Hutchinson's trace estimate and its standard error (``n_probes``
    Rademacher probes of ``fb.hvp``), and the exact Hessian and Gauss-Newton diagonals
    (``fb.hessian_diag``, ``fb.ggn_diag``), flat in ``fb.flatten``'s order."""
    dense, hvp = fb.hessian(net, LOSS), fb.hvp(net, LOSS)
    hd, gd = fb.hessian_diag(net, LOSS), fb.ggn_diag(net, LOSS)

    def dense_and_diagonals(params, x, y, key):
        H = dense(params, x, y)
        est, se = fb.hutchinson_trace(lambda v: hvp(params, x, y, v), params, key, n_samples=n_probes)
        return {
            "dense_top": jnp.linalg.eigvalsh(H)[-1],
            "dense_trace": jnp.trace(H),
            "hutchinson": est,
            "hutchinson_se": se,
            "hessian_diag": fb.flatten(hd(params, x, y))[0],
            "ggn_diag": fb.flatten(gd(params, x, y))[0],
        }

    return jax.jit(jax.vmap(dense_and_diagonals, in_axes=(0, None, None, 0)))


def checks(net, x, y, params0, t: dict, key, n_probes: int) -> dict:
    """The dense and diagonal checks at initialisation (row 0) and at each run's end (rows 1..K).

    ``lanczos_rel_err`` and ``trace_rel_err`` compare the trajectory's first and last measurements
    (Lanczos, sum of the exact diagonal) with the dense Hessian; ``hutchinson_z`` is
    ``|Hutchinson - exact trace| / standard error``; ``diag_rel_diff`` is
    ``|diag H - diag G| / |diag H|`` (Euclidean norms over all parameters).
    """
    stacked = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), params0, t["params"])
    K1 = len(t["rates"]) + 1
    out = {
        k: np.asarray(v)
        for k, v in dense_checks(net, n_probes)(stacked, x, y, jax.random.split(key, K1)).items()
    }
    lanczos = np.concatenate([t["sharpness"][:1, 0], t["sharpness"][:, -1]])  # the same params as the rows
    trace = np.concatenate([t["trace"][:1, 0], t["trace"][:, -1]])
    out["lanczos"], out["exact_trace"] = lanczos, trace
    out["lanczos_rel_err"] = np.abs(lanczos - out["dense_top"]) / np.abs(out["dense_top"])
    out["trace_rel_err"] = np.abs(trace - out["dense_trace"]) / np.abs(out["dense_trace"])
    out["hutchinson_z"] = np.abs(out["hutchinson"] - trace) / out["hutchinson_se"]
    h, g = out["hessian_diag"], out["ggn_diag"]
    out["diag_rel_diff"] = np.linalg.norm(h - g, axis=1) / np.linalg.norm(h, axis=1)
    out["layer"] = np.concatenate([np.full(p["W"].size + p["b"].size, l + 1) for l, p in enumerate(params0)])
    return out


def run(
    rates=(0.2, 0.15, 0.1, 0.05),
    steps: int = 2000,
    every: int = 20,
    n: int = 64,
    width: int = 16,
    seed: int = 0,
    n_probes: int = 300,
) -> dict:
    rates, steps = tuple(sorted(rates, reverse=True)), every * (steps // every)
    net, params0, x, y = problem(n, width, seed)
    key = jax.random.key(seed + 1)
    t = trajectory(net, params0, x, y, rates, steps, every, jax.random.fold_in(key, 0))
    return {
        "n": n,
        "width": width,
        "n_params": net.n_params,
        "steps": steps,
        "every": every,
        **t,
        "checks": checks(net, x, y, params0, t, jax.random.fold_in(key, 1), n_probes),
    }


def summary(r: dict) -> dict:
    """Per-rate numbers the claims read: sharpness relative to 2/eta, loss monotonicity."""
    edge = 2 / r["rates"]
    s = r["sharpness"] / edge[:, None]  # lambda_max / (2/eta)
    half = s[:, s.shape[1] // 2 :]
    dloss = np.diff(r["loss"], axis=1)
    return {
        "edge": edge,
        "sharpness_0": r["sharpness"][:, 0],
        "sharpness_max": r["sharpness"].max(axis=1),
        "max_over_edge": s.max(axis=1),
        "last_half_median_over_edge": np.median(half, axis=1),
        "loss_0": r["loss"][:, 0],
        "loss_end": r["loss"][:, -1],
        "loss_rises": (dloss > 0).sum(axis=1),
        "diag_rel_diff_0": r["checks"]["diag_rel_diff"][0],
        "diag_rel_diff_end": r["checks"]["diag_rel_diff"][1:],
    }


def claims(r: dict) -> dict[str, bool]:
    m, e = summary(r), r["checks"]
    eos, control = slice(0, len(r["rates"]) - 1), -1
    ok = not r["diverged"].any() and bool(np.all(np.isfinite(r["loss"])))
    return {
        "no run diverges (every loss finite)": ok,
        "every rate sharpens: max lambda_max >= 1.25 x lambda_max at initialisation": bool(
            np.all(m["sharpness_max"] >= 1.25 * m["sharpness_0"])
        ),
        f"each rate above the control ({', '.join(map(str, r['rates'][eos]))}) reaches the edge: "
        "max lambda_max >= 0.95 (2/eta)": bool(np.all(m["max_over_edge"][eos] >= 0.95)),
        "... and hovers there: median lambda_max over the last half of the run within 10% of 2/eta": bool(
            np.all(np.abs(m["last_half_median_over_edge"][eos] - 1) <= 0.10)
        ),
        "... never above 1.5 (2/eta)": bool(np.all(m["max_over_edge"][eos] <= 1.5)),
        "... while the loss is not monotone (rises at some step) yet falls at least tenfold": bool(
            np.all(m["loss_rises"][eos] > 0) and np.all(m["loss_end"][eos] <= 0.1 * m["loss_0"][eos])
        ),
        f"the control rate ({r['rates'][control]}) stays below the edge: max lambda_max <= 0.9 (2/eta)": bool(
            m["max_over_edge"][control] <= 0.9
        ),
        "... and its loss falls at every step": bool(m["loss_rises"][control] == 0),
        "at initialisation and at the end the Lanczos top eigenvalue equals dense eigvalsh(fb.hessian) "
        "(relative <= 1e-6)": bool(np.all(e["lanczos_rel_err"] <= 1e-6)),
        "at initialisation and at the end the exact trace (sum of fb.hessian_diag) equals the dense trace "
        "(relative <= 1e-10)": bool(np.all(e["trace_rel_err"] <= 1e-10)),
        "the Hutchinson trace lies within 4 standard errors of the exact trace": bool(
            np.all(e["hutchinson_z"] <= 4)
        ),
        "the Hessian and Gauss-Newton diagonals differ less at the end than at initialisation "
        "(relative norm), every rate": bool(np.all(m["diag_rel_diff_end"] < m["diag_rel_diff_0"])),
    }


def table(r: dict) -> str:
    m, e = summary(r), r["checks"]
    lines = [
        f"y = sin(x), N = {r['n']}, tanh 1-{r['width']}-{r['width']}-1 ({r['n_params']} parameters), "
        f"full-batch GD for {r['steps']} steps, curvature every {r['every']} steps, float64",
        "",
        "| eta | 2/eta | lambda_max at 0 | max lambda_max / (2/eta) | median last half / (2/eta) | loss 0 "
        "-> end "
        "| loss rises | Lanczos vs dense | trace exact vs Hutchinson (se) "
        "| norm(diag H - diag G) / norm(diag H), 0 -> end |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for k, eta in enumerate(r["rates"]):
        lines.append(
            f"| {eta:g} | {m['edge'][k]:.2f} | {m['sharpness_0'][k]:.3f} | {m['max_over_edge'][k]:.3f} | "
            f"{m['last_half_median_over_edge'][k]:.3f} | {m['loss_0'][k]:.3g} -> {m['loss_end'][k]:.3g} | "
            f"{m['loss_rises'][k]} | {e['lanczos_rel_err'][k + 1]:.1e} | {e['exact_trace'][k + 1]:.4g} vs "
            f"{e['hutchinson'][k + 1]:.4g} ({e['hutchinson_se'][k + 1]:.2g}) | "
            f"{m['diag_rel_diff_0']:.3f} -> {m['diag_rel_diff_end'][k]:.3f} |"
        )
    return "\n".join(lines)


def sharpness_figure(r: dict):
    """Sharpness against the step with each rate's 2/eta line; the loss; the trace."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.3))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(r["rates"])))
    for k, eta in enumerate(r["rates"]):
        c = colors[k]
        ax1.plot(r["measured_at"], r["sharpness"][k], ".-", ms=3, color=c, label=f"eta = {eta:g}")
        ax1.axhline(2 / eta, color=c, ls="--", lw=1)
        ax2.semilogy(r["loss"][k], color=c, lw=1, label=f"eta = {eta:g}")
        ax3.plot(r["measured_at"], r["trace"][k], ".-", ms=3, color=c, label=f"eta = {eta:g}")
    ax1.set(
        xlabel="step of full-batch gradient descent",
        ylabel="lambda_max(Hessian of C)  (Lanczos)",
        title="Sharpness; dashed: 2/eta for each rate",
    )
    ax1.legend(fontsize=8)
    ax2.set(
        xlabel="step",
        ylabel="C = mean squared error / 2 (log)",
        title="Training loss (not monotone at the edge)",
    )
    ax2.legend(fontsize=8)
    ax3.set(xlabel="step", ylabel="tr H = sum of fb.hessian_diag (exact)", title="Hessian trace")
    ax3.legend(fontsize=8)
    fig.suptitle(
        f"Edge of stability: y = sin(x), tanh 1-{r['width']}-{r['width']}-1, squared error, full-batch GD",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def diagonal_figure(r: dict, k: int = 0):
    """|diag H| against |diag G| (log-log) at initialisation and after training at rate k, by layer;
    open markers where the Hessian entry is negative (the Gauss-Newton diagonal never is)."""
    import matplotlib.pyplot as plt

    c = r["checks"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True, sharey=True)
    h_all, g_all = np.abs(c["hessian_diag"][[0, k + 1]]), np.abs(c["ggn_diag"][[0, k + 1]])
    lo = max(1e-12, min(h_all[h_all > 0].min(), g_all[g_all > 0].min()))
    hi = max(h_all.max(), g_all.max())
    for ax, row, title in (
        (axes[0], 0, "at initialisation"),
        (axes[1], k + 1, f"after {r['steps']} steps at eta = {r['rates'][k]:g}"),
    ):
        h, g = c["hessian_diag"][row], c["ggn_diag"][row]
        for l in np.unique(c["layer"]):
            on = c["layer"] == l
            pos, neg = on & (h >= 0), on & (h < 0)
            dots = ax.scatter(
                np.maximum(g[pos], lo), np.maximum(np.abs(h[pos]), lo), s=10, alpha=0.7, label=f"layer {l}"
            )
            ax.scatter(
                np.maximum(g[neg], lo),
                np.maximum(np.abs(h[neg]), lo),
                s=16,
                facecolors="none",
                edgecolors=dots.get_facecolor()[0],
            )
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="|diag H| = diag G")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="diag G (Gauss-Newton, fb.ggn_diag)",
            ylabel="|diag H| (Hessian, fb.hessian_diag)",
            title=f"{title}\n|diag H - diag G| / |diag H| = {c['diag_rel_diff'][row]:.3f}",
        )
        ax.legend(fontsize=8, title="open marker: diag H < 0", title_fontsize=8)
    fig.suptitle(
        "Exact Hessian diagonal vs exact Gauss-Newton diagonal, one point per parameter", fontsize=11
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "curvature_during_training")
    p.add_argument(
        "--rates",
        default="0.2,0.15,0.1,0.05",
        help="learning rates, comma-separated; the smallest is the control that should stay below its "
        "edge (quick: 0.2,0.15,0.05)",
    )
    p.add_argument("--steps", type=int, default=2000, help="gradient-descent steps per rate (quick: 600)")
    p.add_argument("--every", type=int, default=20, help="measure the curvature every this many steps")
    p.add_argument("--n", type=int, default=64, help="points on the sine")
    p.add_argument("--width", type=int, default=16, help="units in each of the two hidden layers")
    p.add_argument("--probes", type=int, default=300, help="Rademacher probes of the Hutchinson trace")
    args = p.parse_args(argv)
    if args.quick:
        args.rates, args.steps = ",".join(map(str, QUICK[0])), QUICK[1]
    rates = tuple(float(v) for v in args.rates.split(","))
    t0 = time.perf_counter()
    r = run(rates, args.steps, args.every, args.n, args.width, args.seed, args.probes)
    c = claims(r)
    m = summary(r)
    metrics = {
        "n_params": r["n_params"],
        "join_gap": r["join_gap"],
        "rates": r["rates"],
        "measured_at": r["measured_at"],
        "sharpness": r["sharpness"],
        "trace": r["trace"],
        "loss": r["loss"],
        "diverged": r["diverged"],
        **m,
        "checks": {k: v for k, v in r["checks"].items() if k not in ("hessian_diag", "ggn_diag", "layer")},
    }
    figures = {"sharpness": sharpness_figure(r), "hessian_vs_ggn_diagonal": diagonal_figure(r)}
    return common.finish("curvature_during_training", args, t0, metrics, c, figures, table(r))


if __name__ == "__main__":
    main()
