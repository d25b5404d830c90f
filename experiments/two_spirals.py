"""Two spirals: Levenberg-Marquardt against Adam, decision regions, loss and accuracy against time.

Lang & Witbrock's two interleaved spirals (``fb.data.two_spirals()``: 2 x 97 points, radius up to
6.5, three turns each; labels 1 and 0 become targets t = +1 and -1) are a classic hard problem for
backpropagation (Lang & Witbrock 1988). Levenberg-Marquardt is said to converge faster than
first-order gradient descent, the more so on a complicated error surface (Hagan & Menhaj 1994);
this experiment measures it on this set.
Net: ``fb.mlp([2, 20, 20, 1], activation="tanh", output="tanh")`` (P = 501 > 194 residuals),
``C = 1/(2N) sum (yhat - t)^2``, float64, both methods from the same initial parameters (seed 0).
A point is classified right when ``sign(yhat) = t``.

- Levenberg-Marquardt: ``fb.levenberg_marquardt`` with the library's defaults (Marquardt's rule:
  ``mu`` x0.1 after a step that lowers E, x10 after one that does not; ``mu_0 = 1e-3``; ``D = I``;
  solver ``"auto"``, here ``"dual"``: N < P). To see its accuracy as it trains, the run is made of
  calls of ``--chunk`` trials, each starting from the last one's params and next ``mu``: with
  ``D = I`` and Marquardt's rule that is the state, so the calls continue one run exactly (checked
  by the tests), and every call reuses one compiled program.
- Adam: ``optax.adam(3e-3)`` (the best of 1e-3, 3e-3, 1e-2, 3e-2 on this net: all six seeds of a
  sweep reached 100% by 20000 epochs at 3e-3), ``--epochs`` full-batch steps through ``fb.train``.

Timing: Levenberg-Marquardt's clock runs over its calls only (compiled first by a call with
``goal=inf``), Adam's over its second, identical, run (the first compiles). The wall-time axis of
Adam spreads its run's seconds evenly over its epochs; Levenberg-Marquardt's is the sum of the
calls' seconds, spread over each call's trials. Times depend on the machine and its load: they are
recorded and plotted, not claimed.

    python experiments/two_spirals.py [--lm-trials 1500] [--chunk 25] [--epochs 3000]
        [--seed 0] [--quick] [--out runs/two_spirals]

What it finds: from seed 0, per iteration Levenberg-Marquardt is ahead (C <= 0.1 after about 470
trials, Adam after about 1300 epochs), but not from every start: in quick runs from seeds 0-4 it got
there first four times (1.5-2.7x fewer trials than Adam's epochs) and once not within its 1000
trials (83% right at the end), while Adam always ended at 99.5-100%. Per second it is behind: a trial (a
194 x 194 solve) costs 10-20 Adam
steps, and Adam classifies every point after 3000 epochs, a third of a second, when
Levenberg-Marquardt has about 70% right; it gets to 100% after about 900 trials, 2 s.

Claims tested (each held from all of seeds 0-4): Adam classifies at least 98% of the 194 points
after its epochs (measured 99.5-100%); Levenberg-Marquardt classifies at least 75% within its budget
of trials (measured 83-100%), and its loss never rises (a property of its accept/reject rule).
Which method reaches C <= 0.1 first (trials against epochs) depends on the start, so it is
recorded (metrics ``first_trial_below_0.1``, ``first_epoch_below_0.1``), not claimed; so are
Levenberg-Marquardt's accuracy at Adam's wall time and
the cost of a trial in Adam steps are recorded (metrics) but not claimed: they depend on the
machine's load and compiler flags (70-93% and 10-20 steps measured).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402
from lm_vs_first_order import one_blas_thread  # noqa: E402

import fbackprop as fb  # noqa: E402

LOSS = "squared_error"
ADAM_LR = 3e-3
MU_DEC, MU_INC = 0.1, 10.0  # fb.levenberg_marquardt's defaults, used to carry mu from call to call


def problem(seed: int):
    """``(net, params0, x: (194, 2), t: (194, 1) in {-1, +1})``."""
    x, y = fb.data.two_spirals(97, dtype=np.float64)
    net = fb.mlp([2, 20, 20, 1], activation="tanh", output="tanh")
    return net, net.init(jax.random.key(seed), np.float64), x, 2 * y - 1


@functools.partial(jax.jit, static_argnums=0)
def _n_right(net, params, x, t):
    return jnp.sum(jnp.sign(net.apply(params, x)) == t)


def accuracy(net, params, x, t) -> float:
    """Fraction of points with ``sign(yhat) = t`` (counted, then divided: ``jnp.mean`` of booleans is
    float32 even under x64, and 194 / 194 comes out as 0.99999994)."""
    return int(_n_right(net, params, x, t)) / x.shape[0]


def run_lm(net, params0, x, t, trials: int, chunk: int, mu: float = 1e-3) -> dict:
    """Levenberg-Marquardt for ``trials`` trials in calls of ``chunk``; after each call: accuracy, seconds.

    ``loss[k]`` is C after trial k (``loss[0]``: the start). The next call starts from the last
    params and the ``mu`` Marquardt's rule would use next (``history.mu`` is the ``mu`` each
    trial used; it moves by ``MU_DEC`` after an accepted trial, ``MU_INC`` after a rejected one).
    """
    solve = functools.partial(fb.levenberg_marquardt, net, loss=LOSS, max_steps=chunk)
    jax.block_until_ready(solve(params0, x, t, goal=np.inf))  # compiles
    params, losses, mus, accs, seconds, done = params0, [], [], [accuracy(net, params0, x, t)], [0.0], 0
    while done < trials:
        clock = time.perf_counter()
        r = jax.block_until_ready(solve(params, x, t, mu=mu))
        seconds.append(seconds[-1] + time.perf_counter() - clock)
        k = int(r.iterations)
        losses.append(
            np.asarray(r.history.loss[: k + 1]) if not losses else np.asarray(r.history.loss[1 : k + 1])
        )
        mus.append(np.asarray(r.history.mu[1 : k + 1]))
        mu = float(r.history.mu[k]) * (MU_DEC if float(r.history.accepted[k]) == 1.0 else MU_INC)
        params, done = r.params, done + k
        accs.append(accuracy(net, params, x, t))
        if k < chunk:  # a stopping rule (min_grad, mu_max) ended the run
            break
    ends = np.concatenate([[0], np.cumsum([len(l) for l in losses]) - 1])  # trial index at each call's end
    return {
        "params": params,
        "loss": np.concatenate(losses),
        "mu": np.concatenate(mus),
        "accuracy": np.array(accs),
        "call_ends": ends,
        "call_seconds": np.array(seconds),
        "iterations": int(ends[-1]),
        "seconds": seconds[-1],
    }


def run_adam(net, params0, x, t, epochs: int) -> dict:
    optimizer = optax.adam(ADAM_LR)
    go = lambda: fb.train(net, LOSS, params0, x, t, optimizer, epochs=epochs, progress=False)
    jax.block_until_ready(go())  # compiles
    clock = time.perf_counter()
    r = jax.block_until_ready(go())
    seconds = time.perf_counter() - clock
    return {
        "params": r.params,
        "loss": np.asarray(r.history.loss),
        "iterations": int(r.epochs),
        "seconds": seconds,
        "accuracy": accuracy(net, r.params, x, t),
        "message": r.message,
    }


def lm_accuracy_at(lm: dict, seconds: float) -> float:
    """Levenberg-Marquardt's accuracy after the last call finished by ``seconds`` of its clock."""
    return float(lm["accuracy"][np.searchsorted(lm["call_seconds"], seconds, side="right") - 1])


def run(seed: int, lm_trials: int, chunk: int, epochs: int) -> dict:
    net, p0, x, t = problem(seed)
    lm = run_lm(net, p0, x, t, lm_trials, chunk)
    adam = run_adam(net, p0, x, t, epochs)
    return {"net": net, "x": x, "t": t, "lm": lm, "adam": adam}


def summarize(r: dict) -> tuple[dict, dict]:
    lm, adam, N = r["lm"], r["adam"], len(r["t"])
    lm_per, adam_per = lm["seconds"] / lm["iterations"], adam["seconds"] / adam["iterations"]
    first_100 = np.flatnonzero(lm["accuracy"] == 1.0)
    metrics = {
        "N": N,
        "P": r["net"].n_params,
        "initial_loss": float(lm["loss"][0]),
        "lm": {
            "trials": lm["iterations"],
            "accepted": int(np.sum(np.diff(lm["loss"]) < 0)),
            "seconds": lm["seconds"],
            "final_loss": float(lm["loss"][-1]),
            "final_accuracy": float(lm["accuracy"][-1]),
            "seconds_per_trial": lm_per,
            "first_trial_at_100_percent": None if not first_100.size else int(lm["call_ends"][first_100[0]]),
            "accuracy_at_adam_seconds": lm_accuracy_at(lm, adam["seconds"]),
        },
        "adam": {
            "epochs": adam["iterations"],
            "seconds": adam["seconds"],
            "final_loss": float(adam["loss"][-1]),
            "final_accuracy": adam["accuracy"],
            "seconds_per_epoch": adam_per,
            "lr": ADAM_LR,
        },
        "lm_trial_cost_in_adam_steps": lm_per / adam_per,
    }
    below = lambda loss: (lambda k: int(k[0]) if k.size else None)(np.flatnonzero(loss <= 0.1))
    metrics["lm"]["first_trial_below_0.1"], metrics["adam"]["first_epoch_below_0.1"] = (
        below(lm["loss"]),
        below(adam["loss"]),
    )
    k_lm, k_adam = metrics["lm"]["first_trial_below_0.1"], metrics["adam"]["first_epoch_below_0.1"]
    claims = {
        f"Adam ({adam['iterations']} epochs) classifies at least 98% of the {N} points "
        f"(measured {adam['accuracy']:.1%})": adam["accuracy"] >= 0.98,
        f"Levenberg-Marquardt classifies at least 75% within its {lm['iterations']} trials "
        f"(measured {lm['accuracy'][-1]:.1%})": lm["accuracy"][-1] >= 0.75,
        "Levenberg-Marquardt's loss never rises": bool(np.all(np.diff(lm["loss"]) <= 0)),
    }
    # which reaches C <= 0.1 first depends on the start (LM first from 4 of seeds 0-4): recorded, not claimed
    metrics["lm_trials_over_adam_epochs_to_0.1"] = None if k_lm is None or k_adam is None else k_lm / k_adam
    return metrics, claims


def table(metrics: dict) -> str:
    lm, adam = metrics["lm"], metrics["adam"]
    return "\n".join(
        [
            f"Two spirals, {metrics['N']} points, 2-20-20-1 tanh net (P = {metrics['P']})",
            "",
            "| method | iterations | seconds | ms per iteration | final C | final accuracy |",
            "|---|---|---|---|---|---|",
            f"| Levenberg-Marquardt | {lm['trials']} trials ({lm['accepted']} accepted) | "
            f"{lm['seconds']:.2f} | "
            f"{1e3 * lm['seconds_per_trial']:.3g} | {lm['final_loss']:.2e} | {lm['final_accuracy']:.1%} |",
            f"| Adam (lr {adam['lr']:g}) | {adam['epochs']} epochs | {adam['seconds']:.2f} | "
            f"{1e3 * adam['seconds_per_epoch']:.3g} | "
            f"{adam['final_loss']:.2e} | {adam['final_accuracy']:.1%} |",
            "",
            f"Levenberg-Marquardt's accuracy after Adam's {adam['seconds']:.2f} s: "
            f"{lm['accuracy_at_adam_seconds']:.1%}; "
            f"first call ending at 100%: trial {lm['first_trial_at_100_percent']}",
        ]
    )


def regions_figure(r: dict, metrics: dict):
    """The two trained nets' decision regions over the plane, with the training points."""
    import matplotlib.pyplot as plt

    net, x, t = r["net"], r["x"], r["t"]
    g = np.linspace(-7.5, 7.5, 301)
    G1, G2 = np.meshgrid(g, g)
    grid = np.stack([G1.ravel(), G2.ravel()], axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), constrained_layout=True)
    panels = (
        ("Levenberg-Marquardt", r["lm"]["params"], metrics["lm"]["trials"], "trials", metrics["lm"]),
        ("Adam", r["adam"]["params"], metrics["adam"]["epochs"], "epochs", metrics["adam"]),
    )
    for ax, (name, params, its, unit, m) in zip(axes, panels):
        out = np.asarray(jax.jit(net.apply)(params, grid)).reshape(G1.shape)
        im = ax.contourf(G1, G2, out, levels=np.linspace(-1, 1, 21), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.contour(G1, G2, out, levels=[0.0], colors="k", linewidths=1.5)
        for label, marker, color in ((1, "o", "tab:red"), (-1, "s", "tab:blue")):
            k = t[:, 0] == label
            ax.scatter(
                x[k, 0],
                x[k, 1],
                marker=marker,
                s=14,
                c=color,
                edgecolors="k",
                linewidths=0.5,
                label=f"t = {label:+d}",
            )
        ax.set(
            aspect="equal",
            xlabel="$x_1$",
            ylabel="$x_2$",
            title=f"{name}: {its} {unit}, {m['seconds']:.2f} s\naccuracy {m['final_accuracy']:.1%}, "
            f"C = {m['final_loss']:.1e}",
        )
        ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(
        im,
        ax=axes,
        shrink=0.8,
        label="network output $\\hat y$ (black: $\\hat y = 0$, the decision boundary)",
    )
    return fig


def curves_figure(r: dict, metrics: dict):
    """Loss against iterations and against wall time (log-log), and accuracy against wall time."""
    import matplotlib.pyplot as plt

    lm, adam = r["lm"], r["adam"]
    lm_time = np.interp(np.arange(len(lm["loss"])), lm["call_ends"], lm["call_seconds"])
    adam_time = np.arange(len(adam["loss"])) * metrics["adam"]["seconds_per_epoch"]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for ax, (lx, ax_x) in zip(
        (a1, a2),
        (
            (
                (np.arange(len(lm["loss"])) + 1, np.arange(len(adam["loss"])) + 1),
                "iteration + 1 (LM: every trial, rejected ones too)",
            ),
            ((lm_time + 1e-3, adam_time + 1e-3), "wall time (s) after compilation, + 1 ms"),
        ),
    ):
        ax.loglog(lx[0], lm["loss"], color="tab:red", label="Levenberg-Marquardt")
        ax.loglog(lx[1], adam["loss"], color="tab:blue", label=f"Adam (lr {ADAM_LR:g})")
        ax.set(xlabel=ax_x, ylabel="C = 1/(2N) sum (yhat - t)^2")
        ax.legend(fontsize=8)
    a1.set_title("Loss per iteration")
    a2.set_title("Loss against wall time")
    a3.plot(
        lm["call_seconds"],
        100 * lm["accuracy"],
        "o-",
        ms=3,
        color="tab:red",
        label=f"Levenberg-Marquardt (after each call of {int(np.diff(lm['call_ends'])[0])} trials)",
    )
    a3.plot(
        [0, metrics["adam"]["seconds"]],
        [100 * lm["accuracy"][0], 100 * adam["accuracy"]],
        "s",
        color="tab:blue",
        label="Adam (start and end of its run)",
    )
    a3.axvline(metrics["adam"]["seconds"], color="tab:blue", ls=":", lw=1)
    a3.set(
        xlabel="wall time (s) after compilation",
        ylabel="training points right (%)",
        title="Accuracy against wall time (dotted: Adam's run ends)",
        ylim=(40, 101),
    )
    a3.legend(fontsize=8, loc="lower right")
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "two_spirals")
    p.add_argument(
        "--lm-trials", type=int, default=None, help="Levenberg-Marquardt trials (default 1500, quick 1000)"
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=25,
        help="Levenberg-Marquardt trials per call (accuracy is taken after each)",
    )
    p.add_argument("--epochs", type=int, default=3000, help="Adam's full-batch steps")
    args = p.parse_args(argv)
    trials = args.lm_trials or (1000 if args.quick else 1500)
    t0 = time.perf_counter()
    with one_blas_thread():
        r = run(args.seed, trials, args.chunk, args.epochs)
    metrics, claims = summarize(r)
    figures = {"decision_regions": regions_figure(r, metrics), "curves": curves_figure(r, metrics)}
    return common.finish("two_spirals", args, t0, metrics, claims, figures, table(metrics))


if __name__ == "__main__":
    main()
