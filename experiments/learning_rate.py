"""Too small, good and too large learning rates on one problem; a too-large rate's divergence is reported,
not a crash.

Too large a learning rate makes gradient descent diverge, too small a one makes it converge too
slowly; within the stable range the larger rate trains faster (LeCun, Bottou, Orr & Müller 1998,
"Efficient BackProp", section 5; Goodfellow, Bengio & Courville 2016, section 8.3).
Full-batch gradient descent ``theta <- theta - alpha dC/dtheta`` (``optax.sgd(alpha)``,
``fb.train(mode="batch")``, gradients from the hand-written backward pass) fits ``y = sin(x)`` with
``fb.mlp([1, 16, 1], activation="tanh")`` and ``C = 1/(2N) sum (yhat - y)^2``, in float64, every run
from the same initial parameters, for ``--epochs`` epochs or until ``C <= goal``:

- the small rate creeps down and does not reach the goal;
- the good rate reaches the goal;
- the large rate diverges: ``fb.train`` stops at the first step whose loss or update is not finite,
  returns the parameters before it (finite) with ``status == DIVERGED`` and a message naming the step.

Then a sweep of ``--rates`` learning rates, log-spaced, in one compiled call (``fb.train_many`` with
``optimizer=optax.sgd`` and ``hyper`` the vector of rates), plots the final loss against the rate.
Two reference rates from the curvature: near a minimum gradient descent is stable only for
``alpha < 2 / lambda_max`` (the Hessian's largest eigenvalue); ``lambda_max(theta_0)`` is computed
at the start (``fb.hessian``, dense: 49 parameters). And
``d^2 C / d b_out^2 = 1`` exactly for the output bias (squared error, one linear output), so by the
Rayleigh quotient ``lambda_max >= 1`` at every theta: above rate 2 there is no stable minimum to settle in.

    python experiments/learning_rate.py [--epochs 2000] [--small 0.002] [--good 0.15] [--large 1.5]
        [--goal 0.01] [--rates 25] [--n 100] [--seed 0] [--quick] [--out runs/learning_rate]

Claims tested: the small rate's loss falls but never reaches the goal and stays above the good
rate's loss at every epoch the good run lasts; the good rate reaches the goal C <= 0.01; the large rate's
run returns
status DIVERGED and a message naming the step, with finite parameters whose loss is the history's
last finite entry; in the sweep every run's parameters are finite, the diverging rates are exactly
those above a threshold, none at or below 2 / lambda_max(theta_0) diverges and every one above 2
does, and the best final loss, at an interior rate, is at most a tenth of the smallest rate's.
"""

from __future__ import annotations

import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import fbackprop as fb  # noqa: E402
from fbackprop.status import MESSAGES as STATUS  # noqa: E402
from fbackprop.status import Status  # noqa: E402

DIVERGED, GOAL, MAX_EPOCHS = Status.DIVERGED, Status.GOAL, Status.MAX_EPOCHS

import common  # noqa: E402

LOSS = "squared_error"


def problem(n: int, seed: int, hidden: int = 16):
    """``y = sin(x)`` on n points of [-pi, pi], ``(n, 1)`` each; the network and its initial parameters."""
    x, y = fb.data.sine(n, dtype=np.float64)
    net = fb.mlp([1, hidden, 1], activation="tanh")
    return net, net.init(jax.random.key(seed), jnp.float64), x, y


def lambda_max(net, params, x, y) -> float:
    """Largest eigenvalue of the Hessian ``d2C/dtheta^2`` at ``params`` (``fb.hessian``, dense: small nets
    only)."""
    H = jax.jit(fb.hessian(net, LOSS))(params, x, y)
    return float(jnp.linalg.eigvalsh(H)[-1])


def all_finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def last_finite(loss: np.ndarray) -> float:
    """The last finite entry of a loss history (after a divergence: the loss at the params returned)."""
    finite = loss[np.isfinite(loss)]
    return float(finite[-1])


def single_runs(net, params0, x, y, rates: dict[str, float], epochs: int, goal: float) -> dict:
    """One ``fb.train`` per named rate, each stopping at the goal or at the first diverging step."""
    out = {}
    for name, lr in rates.items():
        r = fb.train(net, LOSS, params0, x, y, optax.sgd(lr), epochs=epochs, goal=goal)
        loss = np.asarray(r.history.loss)
        out[name] = {
            "learning_rate": lr,
            "loss": loss,
            "status": int(r.status),
            "status_text": STATUS[int(r.status)],
            "message": r.message,
            "epochs": int(r.epochs),
            "diverged_step": int(r.diverged_step),
            "params_finite": all_finite(r.params),
            "loss_at_params": float(fb.losses.squared_error(net.apply(r.params, x), y)),
            "last_finite_loss": last_finite(loss),
        }
    return out


def sweep(net, params0, x, y, rates: np.ndarray, epochs: int) -> dict:
    """K full-batch runs, one per rate, vmapped into one compiled ``fb.train_many`` call."""
    K = len(rates)
    stacked = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (K, *leaf.shape)), params0)
    r = fb.train_many(net, LOSS, stacked, x, y, optax.sgd, hyper=jnp.asarray(rates), epochs=epochs)
    loss = np.asarray(r.history.loss)
    status = np.asarray(r.status)
    return {
        "rates": np.asarray(rates),
        "status": status,
        "diverged": status == DIVERGED,
        "diverged_step": np.asarray(r.diverged_step),
        "final_loss": np.array([last_finite(l) for l in loss]),
        "params_finite": np.all(
            [np.isfinite(np.asarray(leaf)).reshape(K, -1).all(axis=1) for leaf in jax.tree.leaves(r.params)],
            axis=0,
        ),
    }


def sweep_summary(s: dict) -> dict:
    """The best converging rate and the smallest diverging one (NaN if none diverged)."""
    div = s["diverged"]
    finite_loss = np.where(div, np.inf, s["final_loss"])
    best = int(np.argmin(finite_loss))
    return {
        "best_rate": float(s["rates"][best]),
        "best_final_loss": float(finite_loss[best]),
        "smallest_diverging_rate": float(s["rates"][div].min()) if div.any() else float("nan"),
    }


def run(
    n: int = 100,
    epochs: int = 2000,
    small: float = 0.002,
    good: float = 0.15,
    large: float = 1.5,
    goal: float = 0.01,
    n_rates: int = 25,
    seed: int = 0,
) -> dict:
    net, params0, x, y = problem(n, seed)
    lam0 = lambda_max(net, params0, x, y)
    runs = single_runs(net, params0, x, y, {"small": small, "good": good, "large": large}, epochs, goal)
    s = sweep(net, params0, x, y, np.logspace(-3, np.log10(30.0), n_rates), epochs)
    return {
        "n": n,
        "epochs": epochs,
        "goal": goal,
        "C0": float(runs["good"]["loss"][0]),
        "lambda_max_0": lam0,
        "stable_rate_0": 2 / lam0,
        **sweep_summary(s),
        "runs": runs,
        "sweep": s,
    }


def claims(r: dict) -> dict[str, bool]:
    sm, gd, lg, s, goal = r["runs"]["small"], r["runs"]["good"], r["runs"]["large"], r["sweep"], r["goal"]
    e_good = gd["epochs"]
    step = re.search(r"diverged at step (\d+)", lg["message"])
    div, rates = s["diverged"], s["rates"]
    first_div = int(np.argmax(div)) if div.any() else len(div)
    finite_loss = np.where(div, np.inf, s["final_loss"])
    best = int(np.argmin(finite_loss))
    return {
        f"the small rate ({sm['learning_rate']}) lowers the loss but does not reach C <= {goal} in "
        f"{r['epochs']} epochs": sm["loss"][-1] < sm["loss"][0]
        and sm["status"] == MAX_EPOCHS
        and np.nanmin(sm["loss"]) > goal,
        f"the small rate's loss stays above the good rate's at every epoch 1..{e_good} of the good run": bool(
            np.all(sm["loss"][1 : e_good + 1] > gd["loss"][1 : e_good + 1])
        ),
        f"the good rate ({gd['learning_rate']}) reaches the goal C <= {goal} "
        "(status 'loss goal reached')": gd["status"] == GOAL and gd["loss"][e_good] <= goal,
        f"the large rate ({lg['learning_rate']}) is reported diverged: status DIVERGED, the message names "
        "the step": lg["status"] == DIVERGED
        and step is not None
        and int(step.group(1)) == lg["diverged_step"] >= 0,
        "the diverged run's parameters are finite and their loss is the history's last finite entry (rel "
        "1e-12)": lg["params_finite"]
        and np.isfinite(lg["loss_at_params"])
        and abs(lg["loss_at_params"] - lg["last_finite_loss"]) <= 1e-12 * abs(lg["last_finite_loss"]),
        "every run of the sweep ends with finite parameters (diverged ones keep their last finite ones)": all(
            s["params_finite"]
        ),
        "in the sweep the diverging rates are exactly those above a threshold (no converging rate above a "
        "diverging one)": bool(div.any() and np.all(div[first_div:]) and not np.any(div[:first_div])),
        "no swept rate at or below 2 / lambda_max(theta_0) diverges": not np.any(
            div[rates <= r["stable_rate_0"]]
        ),
        "every swept rate above 2 diverges (lambda_max >= 1 everywhere: the output bias's curvature)": bool(
            np.all(div[rates > 2])
        )
        and bool(np.any(rates > 2)),
        "the best final loss of the sweep is at an interior rate and at most a tenth of the smallest "
        "rate's": 0 < best < first_div - 1 and finite_loss[best] <= 0.1 * finite_loss[0],
    }


def table(r: dict) -> str:
    lines = [
        f"y = sin(x), N = {r['n']}, full-batch optax.sgd(rate), up to {r['epochs']} epochs, goal C <= "
        f"{r['goal']}; "
        f"C0 = {r['C0']:.4g}, lambda_max(theta_0) = {r['lambda_max_0']:.4g}, "
        f"2 / lambda_max = {r['stable_rate_0']:.4g}",
        "",
        "| rate | status | epochs | last finite loss | message |",
        "|---|---|---:|---:|---|",
    ]
    for name, u in r["runs"].items():
        lines.append(
            f"| {name} {u['learning_rate']} | {u['status_text']} | {u['epochs']} | "
            f"{u['last_finite_loss']:.4g} | {u['message']} |"
        )
    lines += [
        "",
        f"sweep of {len(r['sweep']['rates'])} rates from 1e-3 to 30 (fb.train_many): best rate "
        f"{r['best_rate']:.3g} (C = {r['best_final_loss']:.3g}), "
        f"smallest diverging rate {r['smallest_diverging_rate']:.3g}",
    ]
    return "\n".join(lines)


def curves_figure(r: dict):
    """Left: the three runs' loss curves on one log-log plot (the diverging one leaves the top).
    Right: the diverging run in full, to the step where fb.train stopped it."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    top = 10 * r["C0"]
    colors = {"small": "tab:blue", "good": "tab:green", "large": "tab:red"}
    for name, u in r["runs"].items():
        loss = u["loss"][: u["epochs"] + 1]
        e = np.arange(len(loss))
        ax1.loglog(
            e + 1,
            np.minimum(loss, 1e3 * top),
            color=colors[name],  # clipped: it leaves the axes anyway
            label=f"{name}: rate {u['learning_rate']} ({u['status_text']} after {u['epochs']} epochs)",
        )
        if u["status"] == GOAL:
            ax1.plot(u["epochs"] + 1, loss[-1], "o", color=colors[name])
        if u["status"] == DIVERGED:
            # log10 C on a linear axis: matplotlib's log axis overflows near 1e308
            ax2.plot(
                e,
                np.log10(loss),
                ".-",
                color=colors[name],
                ms=3,
                label=f"rate {u['learning_rate']}: C per epoch",
            )
            k = int(np.flatnonzero(np.isfinite(loss))[-1])  # the last finite loss: at the params returned
            ax2.plot(
                k, np.log10(loss[k]), "kx", ms=9, mew=2, label=f"params returned: C = {loss[k]:.1e} (finite)"
            )
            ax2.set(
                xlabel="epoch (= step)", ylabel="log10 C", title=f"fb.train: {u['message'].split(';')[0]}"
            )
            ax2.text(
                0.03,
                0.97,
                "the next step's loss is inf (float64 overflow):\nstatus DIVERGED, the run stops",
                transform=ax2.transAxes,
                va="top",
                fontsize=8,
            )
            ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    ax1.axhline(r["goal"], color="gray", ls=":", lw=1, label=f"goal C = {r['goal']}")
    ax1.set_ylim(min(r["goal"], np.nanmin(r["runs"]["good"]["loss"])) / 3, top)
    ax1.set(
        xlabel="epoch + 1 (full batch: one step an epoch)",
        ylabel="C = mean squared error / 2",
        title="Learning rate: too small, good, too large (y = sin x)",
    )
    # legends below the axes, outside them: inside, they covered the curves
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    return fig


def sweep_figure(r: dict):
    """Final (last finite) loss against the rate; diverged runs marked at the top; the two curvature rates."""
    import matplotlib.pyplot as plt

    s = r["sweep"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ok = ~s["diverged"]
    ax.loglog(
        s["rates"][ok],
        s["final_loss"][ok],
        "o-",
        color="tab:blue",
        label=f"final loss after {r['epochs']} epochs",
    )
    ceiling = 3 * r["C0"]
    ax.plot(
        s["rates"][~ok],
        np.full((~ok).sum(), ceiling),
        "x",
        color="tab:red",
        ms=8,
        mew=2,
        label="diverged (status DIVERGED; drawn at the top)",
    )
    ax.axvline(
        r["stable_rate_0"],
        color="black",
        ls="--",
        lw=1,
        label=f"2 / lambda_max(theta_0) = {r['stable_rate_0']:.3g}",
    )
    ax.axvline(2.0, color="gray", ls=":", lw=1, label="2 (lambda_max >= 1 always)")
    for name, u in r["runs"].items():
        ax.axvline(
            u["learning_rate"],
            color={"small": "tab:blue", "good": "tab:green", "large": "tab:red"}[name],
            alpha=0.25,
            lw=4,
            label=f"the {name} rate of the curves" if name != "large" else "the large rate",
        )
    ax.set(
        xlabel="learning rate alpha (log)",
        ylabel="C after training (log)",
        title=f"{len(s['rates'])} rates in one compiled fb.train_many call",
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # right of the axes
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "learning_rate")
    p.add_argument(
        "--epochs", type=int, default=2000, help="full-batch gradient-descent steps per rate (quick: 300)"
    )
    p.add_argument("--small", type=float, default=0.002, help="the too-small learning rate")
    p.add_argument("--good", type=float, default=0.15, help="the good learning rate")
    p.add_argument("--large", type=float, default=1.5, help="the too-large learning rate")
    p.add_argument("--goal", type=float, default=0.01, help="stop when C <= goal")
    p.add_argument(
        "--rates",
        type=int,
        default=25,
        help="learning rates in the sweep, log-spaced from 1e-3 to 30 (quick: 13)",
    )
    p.add_argument("--n", type=int, default=100, help="points on the sine")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.rates = 300, 13
    t0 = time.perf_counter()
    r = run(args.n, args.epochs, args.small, args.good, args.large, args.goal, args.rates, args.seed)
    c = claims(r)
    metrics = {k: v for k, v in r.items() if k not in ("runs", "sweep")}
    metrics["runs"] = {name: {k: v for k, v in u.items() if k != "loss"} for name, u in r["runs"].items()}
    metrics["loss_curves"] = {name: u["loss"] for name, u in r["runs"].items()}
    metrics["sweep"] = r["sweep"]
    figures = {"loss_curves": curves_figure(r), "sweep": sweep_figure(r)}
    return common.finish("learning_rate", args, t0, metrics, c, figures, table(r))


if __name__ == "__main__":
    main()
