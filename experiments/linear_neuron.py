"""A two-input linear neuron on one example: the loss is a valley, and backprop is the delta rule.

The classic example of learning as an optimisation problem: a neuron y = x1 w1 + x2 w2 (no bias,
linear output) on the single training case x = (1, 1), t = 0 has the loss E = (t - y)^2 = (w1 + w2)^2,
a parabolic cylinder with its base along w1 = -w2: the minimum is a whole line, the valley
w1 + w2 = 0, not a point. Gradient descent on E = 1/2 (t - y)^2 for the same neuron is the delta
rule Delta w_i = eta (t - y) x_i (Widrow & Hoff 1960).

Conventions, said once: the surface plotted is E = (w1 + w2)^2 (no 1/2). fbackprop's
cost is its "squared_error", C = 1/(2N) sum (yhat - t)^2 = 1/2 (t - y)^2 here (N = 1), that is
C = E / 2, the delta rule's convention; the updates are gradient descent on C with rate eta
(optax.sgd(eta)), which is gradient descent on E with rate eta / 2. The neuron is
fb.mlp([2, 1], output="identity"): one Dense layer, W: (1, 2) = (w1, w2), and a bias b that the
example's neuron does not have; b starts at 0 and is held there (optax.multi_transform sends its
update through optax.set_to_zero), so y = x1 w1 + x2 w2 exactly, and the comparison with the delta
rule is on W. (fb.backprop's bias gradient, dC/db = y - t, is the delta rule for a bias written as a
weight w_0 on
a fixed input 1; it is recorded too.)

Why the path ends where it does: grad_w C = (y - t) x = (w1 + w2) (1, 1), always along (1, 1),
perpendicular to the valley's direction (1, -1). So w1 - w2 never changes, and w1 + w2 shrinks by
the factor (1 - 2 eta) each step (the curvature across the valley is x . x = 2; stable for
eta < 1): the path runs straight down to the orthogonal projection of the start onto the valley,
w* = w0 - (w1 + w2)/2 (1, 1).

    python experiments/linear_neuron.py [--lr 0.1] [--steps 100] [--start 2.0 0.5] [--starts 1000]
        [--seed 0] [--quick] [--out runs/linear_neuron]

Claims tested: from the start, gradient descent reaches the valley (|w1 + w2| < 1e-6); the point
reached is the projection of the start onto the valley (distance < 1e-6), and every step is
perpendicular to it (|Delta w1 - Delta w2| <= 1e-12); at every step the update computed from
fb.backprop equals the delta rule eta (t - y) x_i to 1e-12 in float64; the same three hold from
every one of the random starts (drawn from --seed).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402

import fbackprop as fb  # noqa: E402

X = np.array([[1.0, 1.0]])  # the single training case: x = (x1, x2) = (1, 1) ...
T = np.array([[0.0]])  # ... and t = 0
NET = fb.mlp([2, 1], output="identity")  # y = x @ W.T + b, W: (1, 2), b: (1,)
TOL = 1e-12


def E(w1, w2):
    """The loss surface of this example: ``E = (t - y)^2 = (w1 + w2)^2`` (C = E / 2)."""
    return (T[0, 0] - (X[0, 0] * w1 + X[0, 1] * w2)) ** 2


def optimizer(eta: float) -> optax.GradientTransformation:
    """Gradient descent with rate ``eta`` on W; the bias, absent from the example's neuron, is held fixed."""
    return optax.multi_transform(
        {"descend": optax.sgd(eta), "fixed": optax.set_to_zero()}, ({"W": "descend", "b": "fixed"},)
    )


def descend(w0: jax.Array, eta: float, steps: int) -> dict:
    """``steps`` gradient-descent steps from ``W = w0: (2,)``, ``b = 0``; gradients by ``fb.backprop``.

    Returns ``w: (steps + 1, 2)`` (the path), ``y: (steps,)``, the applied updates ``dw: (steps, 2)``,
    the delta rule ``delta_rule: (steps, 2) = eta (t - y) x`` with ``y = x1 w1 + x2 w2`` computed
    here, and ``db_grad: (steps,)``, fbackprop's dC/db. Pure and jit-able (vmap it over starts).
    """
    grad = fb.backprop(NET, "squared_error")
    opt = optimizer(eta)
    x, t = jnp.asarray(X), jnp.asarray(T)
    params = ({"W": w0.reshape(1, 2), "b": jnp.zeros(1, w0.dtype)},)

    def step(carry, _):
        params, state = carry
        grads = grad(params, x, t)  # dC/dW = delta^T x, delta = y - t (BP4)
        updates, state = opt.update(grads, state, params)
        w = params[0]["W"][0]
        y = x[0, 0] * w[0] + x[0, 1] * w[1]  # the neuron: y = x1 w1 + x2 w2
        rule = eta * (t[0, 0] - y) * x[0]  # the delta rule: Delta w_i = eta (t - y) x_i
        new = optax.apply_updates(params, updates)
        return (new, state), {
            "w": w,
            "y": y,
            "dw": updates[0]["W"][0],
            "delta_rule": rule,
            "db_grad": grads[0]["b"][0],
            "b": params[0]["b"][0],
        }

    (last, _), out = jax.lax.scan(step, (params, opt.init(params)), length=steps)
    out["w"] = jnp.concatenate([out["w"], last[0]["W"]], axis=0)
    out["b_final"] = last[0]["b"][0]
    return out


def projection(w0: np.ndarray) -> np.ndarray:
    """The orthogonal projection of ``w0: (..., 2)`` onto the valley ``w1 + w2 = 0``."""
    s = (w0[..., 0] + w0[..., 1]) / 2
    return np.stack([w0[..., 0] - s, w0[..., 1] - s], axis=-1)


def run(start=(2.0, 0.5), eta: float = 0.1, steps: int = 100, starts: int = 1000, seed: int = 0) -> dict:
    """The path from ``start`` and from ``starts`` random starts (uniform on [-3, 3]^2, from ``seed``), in
    one vmapped call."""
    rand = jax.random.uniform(jax.random.key(seed), (starts, 2), jnp.float64, -3.0, 3.0)
    w0 = jnp.concatenate([jnp.asarray([start], jnp.float64), rand])
    paths = jax.tree.map(np.asarray, jax.jit(jax.vmap(lambda w: descend(w, eta, steps)))(w0))
    w0, w_end = np.asarray(w0), paths["w"][:, -1]
    valley_gap = np.abs(w_end[:, 0] + w_end[:, 1])  # |w1 + w2| at the end
    proj_gap = np.linalg.norm(w_end - projection(w0), axis=1)  # distance to the projection
    rule_gap = np.abs(paths["dw"] - paths["delta_rule"]).max(axis=(1, 2))  # backprop update vs delta rule
    perp_gap = np.abs(paths["dw"][..., 0] - paths["dw"][..., 1]).max(axis=1)  # Delta w along (1, 1)?
    bias_rule_gap = np.abs(-eta * paths["db_grad"] - eta * (T[0, 0] - paths["y"])).max(axis=1)
    bias_moved = np.abs(paths["b"]).max(axis=1)
    return {
        "paths": paths,
        "w0": w0,
        "eta": eta,
        "steps": steps,
        "valley_gap": valley_gap,
        "proj_gap": proj_gap,
        "rule_gap": rule_gap,
        "perp_gap": perp_gap,
        "bias_rule_gap": bias_rule_gap,
        "bias_moved": bias_moved,
    }


def summarize(r: dict) -> tuple[dict, dict]:
    n_rand = len(r["w0"]) - 1
    first = lambda k: float(r[k][0])
    rest = lambda k: float(r[k][1:].max()) if n_rand else 0.0
    w_end = r["paths"]["w"][0, -1]
    metrics = {
        "eta": r["eta"],
        "steps": r["steps"],
        "start": r["w0"][0].tolist(),
        "end": w_end.tolist(),
        "projection_of_start": projection(r["w0"][0]).tolist(),
        "E_start": float(E(*r["w0"][0])),
        "E_end": float(E(*w_end)),
        "valley_gap_end": first("valley_gap"),
        "projection_distance": first("proj_gap"),
        "perpendicular_max_gap": first("perp_gap"),
        "delta_rule_max_abs_diff": first("rule_gap"),
        "bias_delta_rule_max_abs_diff": first("bias_rule_gap"),
        "bias_max_abs": first("bias_moved"),
        "random_starts": n_rand,
        "random_valley_gap_max": rest("valley_gap"),
        "random_projection_distance_max": rest("proj_gap"),
        "random_perpendicular_max_gap": rest("perp_gap"),
        "random_delta_rule_max_abs_diff": rest("rule_gap"),
        "contraction_per_step": float(abs(1 - 2 * r["eta"])),
    }
    s = f"({r['w0'][0][0]:g}, {r['w0'][0][1]:g})"
    claims = {
        f"gradient descent from {s} reaches the valley: |w1 + w2| < 1e-6 after {r['steps']} steps": metrics[
            "valley_gap_end"
        ]
        < 1e-6,
        "the point reached is the projection of the start onto the valley w1 = -w2 "
        "(distance < 1e-6)": metrics["projection_distance"] < 1e-6,
        f"every step is perpendicular to the valley: |Delta w1 - Delta w2| <= {TOL:g}": metrics[
            "perpendicular_max_gap"
        ]
        <= TOL,
        "at every step the update from fb.backprop equals the delta rule eta (t - y) x_i (max abs diff <= "
        f"{TOL:g}, float64)": metrics["delta_rule_max_abs_diff"] <= TOL,
        f"from all {n_rand} random starts: valley reached, projection reached (< 1e-6), steps perpendicular "
        f"and equal to the delta rule (<= {TOL:g})": n_rand > 0
        and metrics["random_valley_gap_max"] < 1e-6
        and metrics["random_projection_distance_max"] < 1e-6
        and metrics["random_perpendicular_max_gap"] <= TOL
        and metrics["random_delta_rule_max_abs_diff"] <= TOL,
    }
    return metrics, claims


def table(m: dict) -> str:
    return "\n".join(
        [
            "| quantity | from the start | worst of the random starts |",
            "|---|---|---|",
            f"| abs(w1 + w2) after {m['steps']} steps | {m['valley_gap_end']:.1e} | "
            f"{m['random_valley_gap_max']:.1e} |",
            f"| distance to the projection onto the valley | {m['projection_distance']:.1e} | "
            f"{m['random_projection_distance_max']:.1e} |",
            f"| max abs(Delta w1 - Delta w2) | {m['perpendicular_max_gap']:.1e} | "
            f"{m['random_perpendicular_max_gap']:.1e} |",
            f"| max abs(backprop update - delta rule) | {m['delta_rule_max_abs_diff']:.1e} | "
            f"{m['random_delta_rule_max_abs_diff']:.1e} |",
            "",
            f"start {tuple(round(v, 4) for v in m['start'])} -> end {tuple(round(v, 6) for v in m['end'])}; "
            "projection "
            f"{tuple(round(v, 6) for v in m['projection_of_start'])}; E {m['E_start']:.3g} -> "
            f"{m['E_end']:.1e}; "
            f"eta = {m['eta']:g}: w1 + w2 shrinks by {m['contraction_per_step']:g} a step",
        ]
    )


def figure(r: dict):
    """The parabolic cylinder, its contours with the descent path, and E along the path."""
    import matplotlib.pyplot as plt

    path, eta = r["paths"]["w"][0], r["eta"]
    w0, w_star = r["w0"][0], projection(r["w0"][0])
    lim = max(3.0, np.abs(path).max() + 0.5)
    g = np.linspace(-lim, lim, 121)
    W1, W2 = np.meshgrid(g, g)
    fig = plt.figure(figsize=(16, 4.8), constrained_layout=True)
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    ax.plot_surface(W1, W2, E(W1, W2), cmap="viridis", alpha=0.8, linewidth=0, rcount=40, ccount=40)
    ax.plot(g, -g, np.zeros_like(g), "r-", lw=2, label="valley $w_1 = -w_2$ (E = 0)")
    ax.set(
        xlabel="$w_1$",
        ylabel="$w_2$",
        title="The loss $E = (w_1 + w_2)^2$ (vertical axis) for\nx = (1, 1), t = 0: a parabolic cylinder",
    )
    ax.view_init(elev=30, azim=-35)
    ax.legend(loc="upper left", fontsize=8)
    ax = fig.add_subplot(1, 3, 2)
    cs = ax.contourf(W1, W2, E(W1, W2), levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="$E = (w_1 + w_2)^2$")
    ax.plot(g, -g, "r--", lw=2, label="valley $w_1 = -w_2$: every point a minimum")
    ax.plot(path[:, 0], path[:, 1], "w.-", ms=5, lw=1, label=f"gradient descent, eta = {eta:g} (on C = E/2)")
    ax.plot(*w0, "wo", ms=9, mec="k", label=f"start ({w0[0]:g}, {w0[1]:g})")
    ax.plot(
        *w_star, "r*", ms=16, mec="k", label=f"projection of the start ({w_star[0]:.3g}, {w_star[1]:.3g})"
    )
    ax.set(
        xlim=(-lim, lim),
        ylim=(-lim, lim),
        aspect="equal",
        xlabel="$w_1$",
        ylabel="$w_2$",
        title="Contours of E: the path runs perpendicular\nto the valley, to the start's projection",
    )
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    ax = fig.add_subplot(1, 3, 3)
    k = np.arange(len(path))
    Ek = E(path[:, 0], path[:, 1])
    ax.semilogy(k, Ek, "o", ms=3, label="E along the path")
    ax.semilogy(
        k, Ek[0] * (1 - 2 * eta) ** (2 * k), "k-", lw=1, label=f"$E_0 (1 - 2\\eta)^{{2k}}$, eta = {eta:g}"
    )
    ax2 = ax.twinx()
    gap = np.abs(r["paths"]["dw"][0] - r["paths"]["delta_rule"][0]).max(axis=1)
    floor = 1e-20  # an exact 0 is drawn here
    ax2.plot(k[:-1], np.maximum(gap, floor), "r.", ms=3)
    ax2.set_yscale("log")
    ax2.set_ylim(floor / 10, 1e-8)
    ax2.set_ylabel(f"max |backprop update - delta rule| (red; 0 drawn at {floor:g})", color="r")
    ax2.axhline(TOL, color="r", ls=":", lw=1)
    ax2.text(
        k[-1], TOL * 2, f"tolerance {TOL:g}; measured max {gap.max():.1e}", color="r", ha="right", fontsize=8
    )
    ax.set(
        xlabel="step k",
        ylabel="$E = (w_1 + w_2)^2$",
        title="E falls geometrically; the backprop update\nis the delta rule at every step (red: the gap)",
    )
    ax.legend(loc="upper right", fontsize=8)
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "linear_neuron")
    p.add_argument(
        "--lr", type=float, default=0.1, help="eta: gradient descent on C = E/2 (stable for eta < 1)"
    )
    p.add_argument("--steps", type=int, default=100, help="gradient-descent steps from the start")
    p.add_argument(
        "--start",
        type=float,
        nargs=2,
        default=[2.0, 0.5],
        metavar=("W1", "W2"),
        help="the plotted start (w1, w2)",
    )
    p.add_argument(
        "--starts", type=int, default=None, help="random starts checked too (default 1000, quick 100)"
    )
    args = p.parse_args(argv)
    args.starts = args.starts if args.starts is not None else (100 if args.quick else 1000)
    t0 = time.perf_counter()
    r = run(tuple(args.start), args.lr, args.steps, args.starts, args.seed)
    metrics, claims = summarize(r)
    return common.finish(
        "linear_neuron", args, t0, metrics, claims, {"loss_surface": figure(r)}, table(metrics)
    )


if __name__ == "__main__":
    main()
