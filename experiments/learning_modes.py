"""The modes of learning, online vs mini-batch (stochastic) vs batch, on one problem from one start.

In online and stochastic learning each propagation is followed at once by a weight update; in
batch learning many propagations come before one update (Rumelhart, Hinton & Williams 1986 update
after each pattern or after a sweep; LeCun, Bottou, Orr & Müller 1998, "Efficient BackProp",
compare the two). Online and stochastic learning make many more updates an epoch, stochastic
learning goes through the data in a random order, and batch learning descends more stably
(Bottou 1998; Wilson & Martinez 2003). Here the three modes
train the same network (``fb.mlp([2, 16, 2], activation="tanh")``, cross-entropy on the logits)
on the same two-moons set from the same initial parameters, with ``fb.train(..., mode=...)``:

- online: one update per example, in order, N updates an epoch;
- mini-batch (stochastic): reshuffled every epoch, N // b updates of b examples an epoch;
- batch: one update from all N examples an epoch.

All three use the same rule ``theta <- theta - alpha dC/dtheta`` (``optax.sgd(alpha)``) with the
same ``alpha``: the cost C is the batch mean (fbackprop's convention), so every mode's step is alpha times an
estimate of the same gradient ``dC/dW^l = delta^l.T @ a^{l-1}`` (averaged over the examples of the
step), the same step length per update; what differs is only how many
updates an epoch makes and how noisy they are. (A rate tuned per mode would mix that with tuning.)

Wall time: each run is one compiled program (``lax.scan`` over epochs), so there is no clock
inside it. Each run is compiled and run once, then run again ``--repeats`` times (the compiled
program is reused); the fastest whole run is its time, spread evenly over its epochs
(``t_e = seconds * e / epochs``) for the loss-vs-time plot. Each run also measures C on the whole
training set once per epoch (the curve's points), which is part of its time. Times are recorded
(results.json, the table, the plot), not claimed: they depend on the machine and its load.

    python experiments/learning_modes.py [--n 200] [--epochs 300] [--batch-size 10] [--lr 0.1]
        [--repeats 3] [--seed 0] [--quick] [--out runs/learning_modes]

Claims tested: after the same number of epochs online and mini-batch learning reach at most half
batch learning's loss (more updates an epoch); batch learning's loss never rises from one epoch to
the next, mini-batch's does at least once (batch is the stable descent); one online epoch on a one-example
set equals one batch
step exactly (float64); mini-batch with b = N follows the batch curve (<= 1e-12 relative); every run
repeated with the same seed and key gives the same bits, and another shuffling key another curve.
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

LOSS = "cross_entropy"


def problem(n: int, seed: int, hidden: int = 16):
    """Two moons ``x: (n, 2)``, labels ``(n,)``; the network and its initial parameters (float64)."""
    x, y = fb.data.two_moons(n, noise=0.1, seed=seed, dtype=np.float64)
    net = fb.mlp([2, hidden, 2], activation="tanh")
    return net, net.init(jax.random.key(seed), jnp.float64), x, y


def updates_per_epoch(mode: str, n: int, batch_size: int) -> int:
    """Online learning updates after every example, batch once an epoch, mini-batch once per b examples."""
    return {"online": n, "minibatch": n // batch_size, "batch": 1}[mode]


def timed_train(net, params0, x, y, optimizer, repeats: int, **kw):
    """``fb.train`` once (compile and run), then ``repeats`` more times on the compiled program.

    Returns ``(results, first_seconds, seconds)``: every run's Result and the fastest re-run.
    The same ``optimizer`` object makes ``fb.train`` reuse its compiled run.
    """
    go = lambda: jax.block_until_ready(fb.train(net, LOSS, params0, x, y, optimizer, progress=False, **kw))
    t0 = time.perf_counter()
    results = [go()]
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results.append(go())
        times.append(time.perf_counter() - t0)
    return results, first, min(times)


def one_example_gap(net, params0, x, y, learning_rate: float) -> float:
    """Max abs difference between one online epoch and one batch step on the set ``x[:1], y[:1]``.

    With one example both make exactly one update from the same gradient ``delta.T @ a_prev``.
    """
    sgd = optax.sgd(learning_rate)
    online = fb.train(net, LOSS, params0, x[:1], y[:1], sgd, epochs=1, mode="online")
    batch = fb.train(net, LOSS, params0, x[:1], y[:1], sgd, epochs=1, mode="batch")
    gaps = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), online.params, batch.params)
    return max(jax.tree.leaves(gaps))


def seconds_to_reach(loss: np.ndarray, target: float, seconds_per_epoch: float) -> float:
    """Wall time to the first epoch whose loss is <= ``target`` (NaN if never), at even epoch times."""
    hit = np.flatnonzero(loss <= target)
    return float(hit[0] * seconds_per_epoch) if hit.size else float("nan")


def accuracy(net, params, x, y) -> float:
    """Fraction of examples whose larger logit is their label."""
    return float(np.mean(np.argmax(np.asarray(net.apply(params, x)), axis=1) == y))


def run(
    n: int = 200,
    epochs: int = 300,
    batch_size: int = 10,
    learning_rate: float = 0.1,
    seed: int = 0,
    repeats: int = 3,
) -> dict:
    """Train the three modes from the same start; time them; the exactness checks beside them."""
    net, params0, x, y = problem(n, seed)
    sgd = optax.sgd(learning_rate)  # one object: each mode compiles once, then reruns are cached
    key = jax.random.key(seed + 1)  # mini-batch shuffling
    modes = {
        "online": dict(mode="online"),
        "mini-batch": dict(mode="minibatch", batch_size=batch_size, key=key),
        "batch": dict(mode="batch"),
    }
    r = {"n": n, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "modes": {}}
    same_bits = True
    for name, kw in modes.items():
        results, first, seconds = timed_train(net, params0, x, y, sgd, repeats, epochs=epochs, **kw)
        res = results[0]
        loss = np.asarray(res.history.loss)
        same_bits &= all(np.array_equal(loss, np.asarray(o.history.loss)) for o in results[1:])
        r["modes"][name] = {
            "mode": kw["mode"],
            "updates_per_epoch": updates_per_epoch(kw["mode"], n, batch_size),
            "loss": loss,
            "final_loss": float(loss[-1]),
            "accuracy": accuracy(net, res.params, x, y),
            "loss_rises": int(np.sum(np.diff(loss) > 0)),
            "status": res.message,
            "seconds": seconds,
            "seconds_first_call": first,
            "seconds_per_epoch": seconds / epochs,
        }
    r["same_bits_on_repeat"] = bool(same_bits)
    target = r["modes"]["batch"]["final_loss"]
    for m in r["modes"].values():  # a measurement, not a claim: within timing noise on a busy machine
        m["seconds_to_batch_final_loss"] = seconds_to_reach(m["loss"], target, m["seconds_per_epoch"])
    other = fb.train(
        net,
        LOSS,
        params0,
        x,
        y,
        sgd,
        epochs=epochs,
        mode="minibatch",
        batch_size=batch_size,
        key=jax.random.key(seed + 2),
    )
    r["other_key_differs"] = not np.array_equal(
        np.asarray(other.history.loss), r["modes"]["mini-batch"]["loss"]
    )
    full = fb.train(net, LOSS, params0, x, y, sgd, epochs=epochs, mode="minibatch", batch_size=n, key=key)
    batch_loss = r["modes"]["batch"]["loss"]
    r["minibatch_n_vs_batch_max_rel"] = float(
        np.max(np.abs(np.asarray(full.history.loss) - batch_loss) / batch_loss)
    )
    r["one_example_max_abs_diff"] = one_example_gap(net, params0, x, y, learning_rate)
    return r


def claims(r: dict) -> dict[str, bool]:
    m = r["modes"]
    on, mb, ba = m["online"], m["mini-batch"], m["batch"]
    return {
        "after the same epochs, online learning's final loss is at most half of batch learning's": on[
            "final_loss"
        ]
        <= 0.5 * ba["final_loss"],
        "after the same epochs, mini-batch learning's final loss is at most half of batch learning's": mb[
            "final_loss"
        ]
        <= 0.5 * ba["final_loss"],
        "batch learning's loss never rises from one epoch to the next (0 rises)": ba["loss_rises"] == 0,
        "mini-batch learning's loss rises at least once between epochs (reshuffled, noisy steps)": mb[
            "loss_rises"
        ]
        >= 1,
        "one online epoch on a one-example set equals one batch step exactly (max abs diff == 0, float64)": r[
            "one_example_max_abs_diff"
        ]
        == 0.0,
        "mini-batch with b = N follows the batch loss curve (max rel diff <= 1e-12)": r[
            "minibatch_n_vs_batch_max_rel"
        ]
        <= 1e-12,
        "each mode rerun with the same seed and key gives the same loss curve bit for bit": r[
            "same_bits_on_repeat"
        ],
        "mini-batch with another shuffling key gives a different loss curve": r["other_key_differs"],
    }


def table(r: dict) -> str:
    lines = [
        f"two moons, N = {r['n']}, {r['epochs']} epochs, optax.sgd({r['learning_rate']}), same initial "
        "parameters",
        "",
        "| mode | updates/epoch | final loss | accuracy | loss rises | seconds (run) | ms/epoch "
        "| s to batch's final loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in r["modes"].items():
        label = f"{name} (b = {r['batch_size']})" if m["mode"] == "minibatch" else name
        lines.append(
            f"| {label} | {m['updates_per_epoch']} | {m['final_loss']:.4g} | {m['accuracy']:.3f} | "
            f"{m['loss_rises']} | {m['seconds']:.4f} | {1e3 * m['seconds_per_epoch']:.3f} | "
            f"{m['seconds_to_batch_final_loss']:.4f} |"
        )
    return "\n".join(lines)


def figure(r: dict):
    """Loss vs epochs, and loss vs wall time (each run's time spread evenly over its epochs)."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, m in r["modes"].items():
        label = f"{name} (b = {r['batch_size']})" if m["mode"] == "minibatch" else name
        label += f", {m['updates_per_epoch']} update{'s' if m['updates_per_epoch'] > 1 else ''}/epoch"
        e = np.arange(len(m["loss"]))
        ax1.semilogy(e, m["loss"], label=label)
        ax2.loglog(m["seconds_per_epoch"] * e[1:], m["loss"][1:], label=label)
    for ax in (ax1, ax2):
        ax.axhline(r["modes"]["batch"]["final_loss"], color="gray", ls=":", lw=1, label="batch's final loss")
    ax1.set(
        xlabel="epoch (one pass over the N examples)",
        ylabel="C (mean cross-entropy, training set)",
        title=f"Modes of learning, optax.sgd({r['learning_rate']}), same start",
    )
    ax2.set(
        xlabel="wall time, s (compiled run, spread evenly over its epochs)",
        ylabel="C (training set)",
        title="The same runs against wall time",
    )
    ax1.legend()
    ax2.legend(fontsize=8)
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "learning_modes")
    p.add_argument("--n", type=int, default=200, help="two-moons examples")
    p.add_argument("--epochs", type=int, default=300, help="epochs of every mode (quick: 100)")
    p.add_argument("--batch-size", type=int, default=10, help="mini-batch size b")
    p.add_argument("--lr", type=float, default=0.1, help="the learning rate alpha, the same for every mode")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed reruns of each compiled run, the fastest counts (quick: 2)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats = 100, 2
    t0 = time.perf_counter()
    r = run(args.n, args.epochs, args.batch_size, args.lr, args.seed, args.repeats)
    c = claims(r)
    metrics = {k: v for k, v in r.items() if k != "modes"}
    metrics["modes"] = {name: {k: v for k, v in m.items() if k != "loss"} for name, m in r["modes"].items()}
    metrics["loss_curves"] = {name: m["loss"] for name, m in r["modes"].items()}
    return common.finish(
        "learning_modes", args, t0, metrics, c, {"loss_vs_epochs_and_time": figure(r)}, table(r)
    )


if __name__ == "__main__":
    main()
