"""XOR: a 2-2-1 sigmoid network learns it; a single layer (no hidden units) cannot.

XOR's four points (fb.data.xor: t = 1 at (0, 1) and (1, 0), t = 0 at (0, 0) and (1, 1)) are not
linearly separable: a single-layer perceptron cannot learn them (Minsky & Papert 1969), a network
with a hidden layer can (Amari 1967; Rumelhart, Hinton & Williams 1986). Proof: a single unit with a
monotone output f (sigmoid or step) puts a point
on the 1-side of 0.5 exactly when z = w1 x1 + w2 x2 + b > 0. All four right would need
b < 0 (at (0,0)), w2 + b > 0, w1 + b > 0 and w1 + w2 + b < 0 (at (1,1)); adding the middle two
gives w1 + w2 + b > -b > 0, a contradiction. So at most 3 of the 4 points can be right.

    python experiments/xor.py [--seeds 1000] [--epochs 5000] [--lr 4.0] [--seed 0] [--quick] [--out runs/xor]

Setup: sigmoid hidden and output units, the cost C = 1/(2N) sum (yhat - t)^2 (fbackprop's
"squared_error", the batch mean), initial weights W, b ~ U[-1, 1] (init="uniform"; the classic
tutorial choice),
plain full-batch gradient descent (optax.sgd) with eta = 4 on the mean C, which is eta = 1 on the
summed error 1/2 sum (yhat - t)^2. One vmapped, compiled call (fb.train_many over fb.init_many)
trains every seed. Success: all four outputs on the right side of 0.5 (yhat > 0.5 where t = 1,
yhat < 0.5 where t = 0); also reported: all four within 0.1 of their targets.

Failures are not slow runs: they end on plateaus of C, where the gradient has all but vanished
while the weights keep growing. Two points stuck at yhat = 1/2 give C -> 1/16; three points lumped
at their mean target (2/3 or 1/3) give C -> 1/12; all four at 1/2 give C = 1/8. (Hamey 1998 showed
the 2-2-1 XOR surface has no strict local minima: these are flat regions and saddles reached as
weights grow, which gradient descent cannot leave in practice.) The single-layer network, trained
the same way, goes to yhat = 1/2 everywhere, C = 1/8. Rosenblatt's perceptron rule (Rosenblatt 1958:
the delta rule with a step output, w <- w + eta (t - y) x with the bias as w_0 on a fixed input 1)
never finishes an epoch without an error and keeps revisiting the same few weights.

Claims tested: the 2-2-1 network classifies all four points for >= 70% of the seeds; no
single-layer network does (0 of the seeds) and none ends below C = 1/8 - 1e-6; >= 90% of the failing
2-2-1 runs end on a plateau (C within 0.005 of 1/16, 1/12 or 1/8, |grad C| < 1e-3); the perceptron
rule errs in every epoch, cycles among fewer than 50 weight vectors, and its best line gets exactly
3 of 4 points.
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

PLATEAUS = (1 / 16, 1 / 12, 1 / 8)  # C on the plateaus (see the module docstring)
PLATEAU_TOL, GRAD_TOL = 0.005, 1e-3
SUCCESS_RATE = 0.70  # claimed lower bound on the 2-2-1 success rate (measured: about 0.8 - 0.86)


def right_side(yhat: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(K, N)`` bool: output on the right side of 0.5 (``yhat > 0.5`` where t = 1, else ``< 0.5``)."""
    return np.where(t > 0.5, yhat > 0.5, yhat < 0.5)


def train_seeds(sizes, key, k: int, epochs: int, lr: float) -> dict:
    """``k`` runs of ``fb.mlp(sizes)`` (sigmoid units, U[-1, 1] init) on XOR, one vmapped call.

    Returns the stacked final ``params``, outputs ``yhat: (k, 4)``, loss histories ``loss: (k, epochs + 1)``,
    the final gradient norms ``grad_norm: (k,)`` (by fb.backprop_trace) and the success masks.
    """
    x, t = fb.data.xor(np.float64)
    net = fb.mlp(sizes, activation="sigmoid", output="sigmoid", init="uniform")
    params0 = fb.init_many(net, key, k, jnp.float64)
    r = fb.train_many(net, "squared_error", params0, x, t, optax.sgd(lr), epochs=epochs)
    trace = jax.vmap(fb.backprop_trace(net, "squared_error"), (0, None, None))(r.params, x, t)
    yhat = np.asarray(trace.a[-1])[..., 0]  # a^L, the outputs after training
    grad_norm = np.sqrt(
        sum(np.sum(np.asarray(g).reshape(k, -1) ** 2, axis=1) for g in jax.tree.leaves(trace.grads))
    )
    right = right_side(yhat, t[:, 0])
    return {
        "net": net,
        "params": r.params,
        "yhat": yhat,
        "loss": np.asarray(r.history.loss),
        "final_loss": np.asarray(r.history.loss[:, -1]),
        "grad_norm": grad_norm,
        "n_right": right.sum(1),
        "success": right.all(1),
        "within_0.1": (np.abs(yhat - t[:, 0]) < 0.1).all(1),
        "diverged": int(np.sum(np.asarray(r.status) == DIVERGED)),
    }


def plateau_of(final_loss: np.ndarray, grad_norm: np.ndarray) -> np.ndarray:
    """Index into ``PLATEAUS`` of the plateau each run sits on, or -1 (not within ``PLATEAU_TOL``, or
    gradient not small)."""
    gap = np.abs(final_loss[:, None] - np.array(PLATEAUS)[None, :])
    near = (gap.min(1) < PLATEAU_TOL) & (grad_norm < GRAD_TOL)
    return np.where(near, gap.argmin(1), -1)


def perceptron(epochs: int = 100, eta: float = 1.0, seed: int = 0, data=None) -> dict:
    """Rosenblatt's rule on XOR (or ``data = (x: (4, 2), t: (4, 1))``), online in a shuffled order each
    epoch, from ``w = (-1/2, 0, 0)``.

    ``w = (w_0, w_1, w_2)`` with the bias as ``w_0`` on a fixed input 1;
    ``y = 1 if w . (1, x) > 0 else 0``; ``w <- w + eta (t - y) (1, x)`` (the delta rule with a step
    output, Rosenblatt 1958).
    Keeps the best weights seen (Gallant's pocket) and every distinct weight vector visited. With
    ``eta = 1`` the bias stays a half-integer and ``w_1, w_2`` integers (exact in floating point), so
    no line ever passes through one of the four points and revisited weights compare equal.
    """
    x, t = data if data is not None else fb.data.xor(np.float64)
    x1 = np.hstack([np.ones((4, 1)), x])  # (4, 3): the fixed input 1 first
    rng = np.random.default_rng(seed)
    w = np.array([-0.5, 0.0, 0.0])
    errors, visited = [], {tuple(w)}
    best_w, best_right = w.copy(), int(np.sum((x1 @ w > 0) == (t[:, 0] > 0.5)))
    for _ in range(epochs):
        wrong = 0
        for n in rng.permutation(4):
            y = float(x1[n] @ w > 0)
            wrong += int(y != t[n, 0])
            w = w + eta * (t[n, 0] - y) * x1[n]
            visited.add(tuple(w))
            n_right = int(np.sum((x1 @ w > 0) == (t[:, 0] > 0.5)))
            if n_right > best_right:
                best_w, best_right = w.copy(), n_right
        errors.append(wrong)
    return {
        "errors": np.array(errors),
        "visited": np.array(sorted(visited)),
        "best_w": best_w,
        "best_right": best_right,
        "max_abs_w": float(np.abs(np.array(sorted(visited))).max()),
    }


def run(seeds: int = 1000, epochs: int = 5000, lr: float = 4.0, seed: int = 0) -> dict:
    k221, k21 = jax.random.split(jax.random.key(seed))
    two = train_seeds([2, 2, 1], k221, seeds, epochs, lr)
    one = train_seeds([2, 1], k21, seeds, epochs, lr)
    fail = ~two["success"]
    plateau = plateau_of(two["final_loss"][fail], two["grad_norm"][fail])
    rule = perceptron(100, 1.0, seed)
    return {
        "two": two,
        "one": one,
        "plateau": plateau,
        "perceptron": rule,
        "seeds": seeds,
        "epochs": epochs,
        "lr": lr,
    }


def summarize(r: dict) -> tuple[dict, dict]:
    two, one, rule, plateau = r["two"], r["one"], r["perceptron"], r["plateau"]
    K = r["seeds"]
    n_fail = int(np.sum(~two["success"]))
    on_plateau = int(np.sum(plateau >= 0))
    q = lambda a: {f"q{int(p * 100):02d}": float(np.quantile(a, p)) for p in (0.0, 0.5, 0.9, 1.0)}
    metrics = {
        "seeds": K,
        "epochs": r["epochs"],
        "lr": r["lr"],
        "success_rate_221": float(two["success"].mean()),
        "within_0.1_rate_221": float(two["within_0.1"].mean()),
        "final_loss_221": q(two["final_loss"]),
        "final_loss_221_successes": q(two["final_loss"][two["success"]]),
        "points_right_221_counts": np.bincount(two["n_right"], minlength=5).tolist(),
        "failures_221": n_fail,
        "failures_on_plateau": on_plateau,
        "failures_per_plateau": {f"C={p:.4f}": int(np.sum(plateau == i)) for i, p in enumerate(PLATEAUS)},
        "grad_norm_221_failures": q(two["grad_norm"][~two["success"]]) if n_fail else None,
        "diverged_221": two["diverged"],
        "diverged_single": one["diverged"],
        "success_count_single": int(one["success"].sum()),
        "within_0.1_rate_single": float(one["within_0.1"].mean()),
        "points_right_single_counts": np.bincount(one["n_right"], minlength=5).tolist(),
        "final_loss_single": q(one["final_loss"]),
        "perceptron_min_errors_per_epoch": int(rule["errors"].min()),
        "perceptron_distinct_weights": len(rule["visited"]),
        "perceptron_max_abs_w": rule["max_abs_w"],
        "perceptron_best_w": rule["best_w"].tolist(),
        "perceptron_best_points_right": rule["best_right"],
    }
    claims = {
        f"the 2-2-1 network classifies all four points (right side of 0.5) for >= {SUCCESS_RATE:.0%} of {K} "
        "seeds": metrics["success_rate_221"] >= SUCCESS_RATE,
        f"no single-layer network classifies all four points (0 of {K} seeds)": metrics[
            "success_count_single"
        ]
        == 0,
        "no single-layer run ends below C = 1/8 - 1e-6": metrics["final_loss_single"]["q00"] >= 1 / 8 - 1e-6,
        f">= 90% of the failing 2-2-1 runs end on a plateau (C within {PLATEAU_TOL} of 1/16, 1/12 or 1/8, "
        f"|grad C| < {GRAD_TOL:g})": on_plateau >= 0.9 * n_fail,
        "Rosenblatt's rule makes an error in every one of its 100 epochs": metrics[
            "perceptron_min_errors_per_epoch"
        ]
        >= 1,
        "Rosenblatt's rule cycles: its 400 updates visit fewer than 50 distinct weight vectors": metrics[
            "perceptron_distinct_weights"
        ]
        < 50,
        "the best line Rosenblatt's rule visits classifies exactly 3 of the 4 points": rule["best_right"]
        == 3,
    }
    return metrics, claims


def table(metrics: dict) -> str:
    K = metrics["seeds"]
    lines = [
        f"| network | all 4 right (of {K} seeds) | all 4 within 0.1 | median final C | points right: "
        "0/1/2/3/4 |",
        "|---|---|---|---|---|",
        f"| 2-2-1 | {metrics['success_rate_221']:.1%} | {metrics['within_0.1_rate_221']:.1%} | "
        f"{metrics['final_loss_221']['q50']:.2e} | "
        f"{'/'.join(map(str, metrics['points_right_221_counts']))} |",
        f"| 2-1 (no hidden layer) | {metrics['success_count_single'] / K:.1%} | "
        f"{metrics['within_0.1_rate_single']:.1%} | "
        f"{metrics['final_loss_single']['q50']:.4f} | "
        f"{'/'.join(map(str, metrics['points_right_single_counts']))} |",
        "",
        f"2-2-1 failures: {metrics['failures_221']}, of which on a plateau: {metrics['failures_on_plateau']} "
        f"({', '.join(f'{k}: {v}' for k, v in metrics['failures_per_plateau'].items())})",
    ]
    return "\n".join(lines)


def _points(ax, x, t):
    for label, marker, color in ((0, "o", "white"), (1, "s", "black")):
        m = t[:, 0] == label
        ax.scatter(
            x[m, 0],
            x[m, 1],
            marker=marker,
            s=120,
            c=color,
            edgecolors="k",
            linewidths=1.5,
            zorder=5,
            label=f"t = {label}",
        )


def boundary_figure(r: dict):
    """Left: the 2-2-1 network's output on the unit square; right: the single layer and Rosenblatt's lines."""
    import matplotlib.pyplot as plt

    x, t = fb.data.xor(np.float64)
    g = np.linspace(-0.2, 1.2, 101)
    G1, G2 = np.meshgrid(g, g)
    grid = np.stack([G1.ravel(), G2.ravel()], axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    two, one = r["two"], r["one"]
    i = int(np.argmax(two["success"]))  # the first seed that succeeded
    take = lambda tree, j: jax.tree.map(lambda l: l[j], tree)
    p = take(two["params"], i)
    out = np.asarray(two["net"].apply(p, grid)).reshape(G1.shape)
    ax = axes[0]
    shade = dict(
        extent=(g[0], g[-1], g[0], g[-1]), origin="lower", cmap="RdBu_r", vmin=0, vmax=1, aspect="equal"
    )
    im = ax.imshow(out, **shade)
    ax.contour(G1, G2, out, levels=[0.5], colors="k", linewidths=2)
    W, b = np.asarray(p[0]["W"]), np.asarray(p[0]["b"])
    for j in range(2):  # hidden unit j's line z_j = W[j] . x + b_j = 0
        ax.plot(
            g,
            -(W[j, 0] * g + b[j]) / W[j, 1],
            "--",
            color="gold",
            lw=2,
            label="hidden units' lines z = 0" if j == 0 else None,
        )
    _points(ax, x, t)
    ax.plot([], [], "k-", lw=2, label="output = 0.5")
    ax.set(
        xlim=(-0.2, 1.2),
        ylim=(-0.2, 1.2),
        xlabel="$x_1$",
        ylabel="$x_2$",
        aspect="equal",
        title=f"2-2-1 sigmoid network (seed {i} of {r['seeds']}): output $\\hat y$",
    )
    ax.legend(loc="center", fontsize=8, framealpha=0.9)
    ax = axes[1]
    j = int(np.argmin(one["final_loss"]))
    out1 = np.asarray(one["net"].apply(take(one["params"], j), grid)).reshape(G1.shape)
    ax.imshow(out1, **shade)
    rule = r["perceptron"]
    for k, w in enumerate(rule["visited"]):  # w0 + w1 x1 + w2 x2 = 0
        _line(
            ax,
            g,
            w,
            dict(color="0.45", lw=0.8, ls=":", label="lines Rosenblatt's rule visits" if k == 0 else None),
        )
    _line(
        ax,
        g,
        rule["best_w"],
        dict(color="tab:green", lw=2.5, label=f"its best line: {rule['best_right']} of 4 right"),
    )
    _points(ax, x, t)
    ax.set(
        xlim=(-0.2, 1.2),
        ylim=(-0.2, 1.2),
        xlabel="$x_1$",
        ylabel="$x_2$",
        aspect="equal",
        title=f"No hidden layer: output $\\approx$ {out1.mean():.3f} everywhere (C = 1/8)",
    )
    ax.legend(loc="center", fontsize=8, framealpha=0.9)
    fig.colorbar(im, ax=axes, label="network output $\\hat y$", shrink=0.85)
    return fig


def _line(ax, g, w, style):
    """Draw ``w0 + w1 x1 + w2 x2 = 0``."""
    w0, w1, w2 = w
    if abs(w2) > 1e-12:
        ax.plot(g, -(w0 + w1 * g) / w2, **style)
    elif abs(w1) > 1e-12:
        ax.plot(np.full_like(g, -w0 / w1), g, **style)


def loss_figure(r: dict):
    """Left: histogram of the final losses over all seeds; right: loss curves of a few seeds."""
    import matplotlib.pyplot as plt

    two, one = r["two"], r["one"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    bins = np.logspace(np.log10(max(two["final_loss"].min(), 1e-6)) - 0.1, np.log10(0.2), 60)
    ax1.hist(two["final_loss"][two["success"]], bins, color="tab:blue", label="2-2-1, all 4 right")
    ax1.hist(two["final_loss"][~two["success"]], bins, color="tab:red", label="2-2-1, failed")
    ax1.hist(one["final_loss"], bins, color="0.5", alpha=0.6, label="2-1 (no hidden layer)")
    for p, name in zip(PLATEAUS, ("1/16", "1/12", "1/8")):
        ax1.axvline(p, color="k", ls=":", lw=1)
        ax1.text(p, ax1.get_ylim()[1] * 0.9, name, rotation=90, ha="right", va="top", fontsize=8)
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="final C = 1/(2N) sum (yhat - t)^2",
        ylabel="number of seeds",
        title=f"Final loss over {r['seeds']} seeds ({r['epochs']} epochs, eta = {r['lr']:g})",
    )
    ax1.legend(fontsize=8)
    epochs = np.arange(two["loss"].shape[1])
    failed = np.flatnonzero(~two["success"])
    ok = np.flatnonzero(two["success"])[:5]
    bad = np.concatenate(
        [failed[r["plateau"] == i][:3] for i in range(len(PLATEAUS))]
    )  # a few from each plateau
    for k, i in enumerate(ok):
        ax2.loglog(
            epochs + 1, two["loss"][i], color="tab:blue", lw=1, label="2-2-1, succeeded" if k == 0 else None
        )
    for k, i in enumerate(bad):
        ax2.loglog(
            epochs + 1,
            two["loss"][i],
            color="tab:red",
            lw=1,
            label="2-2-1, failed (plateau)" if k == 0 else None,
        )
    ax2.loglog(epochs + 1, one["loss"][0], color="0.4", lw=1.5, ls="--", label="2-1 (no hidden layer)")
    for p in PLATEAUS:
        ax2.axhline(p, color="k", ls=":", lw=0.8)
    ax2.set(
        xlabel="epoch + 1",
        ylabel="C",
        title="Loss curves of a few seeds: failures flatten out\non plateaus (dotted: C = 1/16, 1/12, 1/8)",
    )
    ax2.legend(fontsize=8)
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "xor")
    p.add_argument(
        "--seeds", type=int, default=None, help="number of initialisations (default 1000, quick 200)"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="full-batch steps per run (default 5000, quick 2000)"
    )
    p.add_argument("--lr", type=float, default=4.0, help="learning rate on the batch-mean C")
    args = p.parse_args(argv)
    args.seeds = args.seeds or (200 if args.quick else 1000)
    args.epochs = args.epochs or (2000 if args.quick else 5000)
    t0 = time.perf_counter()
    r = run(args.seeds, args.epochs, args.lr, args.seed)
    metrics, claims = summarize(r)
    figures = {"decision_boundary": boundary_figure(r), "final_losses": loss_figure(r)}
    return common.finish("xor", args, t0, metrics, claims, figures, table(metrics))


if __name__ == "__main__":
    main()
