"""K-FAC and EKFAC against Adam, SGD with momentum, Levenberg-Marquardt and Hessian-free on digits problems.

Three full-batch problems on ``--n`` of scikit-learn's 8x8 digits (the training part of the 60/20/20
split of ``digits.py``, the first ``n`` examples; the same examples for every method), float64:

- ``mlp``: ``64-32-10`` tanh, softmax cross-entropy (P = 2410), inputs standardised per pixel;
- ``cnn``: the CNN of ``cnn_digits.py`` with 4 and 8 channels (two 3x3 convolutions, relu, average then
  max pooling, ``Dense(10)``; P = 666) on the digits as ``(8, 8, 1)`` images, cross-entropy;
- ``autoencoder``: ``64-32-16-8-16-32-64`` tanh with a linear output (P = 5544), squared error on the
  reconstruction of the pixels scaled to [0, 1] (the deep autoencoder benchmark of Hinton &
  Salakhutdinov 2006 and Martens 2010, small).

The methods, each from the same ``--seeds`` initialisations (``--seed``, ``--seed`` + 1, ...):
K-FAC (``fb.kfac``, Martens & Grosse 2015; KFC on the convolutions, Grosse & Martens 2016) and EKFAC
(``fb.ekfac``, George et al. 2018) with their defaults (rate and momentum from the quadratic model,
damping by the Levenberg-Marquardt rule, factors every step, inverses or eigenbases every 20), both
with ``kind="fisher"`` (one target drawn from the model per example: EKFAC's per-example gradients
then cost one backward pass, not one per output); Adam (``optax.adam``, Kingma & Ba 2015) and SGD
with momentum 0.9 (``optax.sgd``), their rates the best final loss of a sweep over factors of about 3
from the first initialisation (``RATES``; on the CNN one step lower, as the sweep's best diverged
from other initialisations); Levenberg-Marquardt (``fb.levenberg_marquardt``, Marquardt's
damping, the GGN form for the cross-entropy) with ``solver="cg"`` (at most 50 conjugate-gradient steps
a trial: the dense solve of the 5544-parameter autoencoder would cost about 57 GFLOP a trial), every
trial an iteration, rejected ones included; Hessian-free (``fb.optim.hessian_free``, Martens 2010) with
50 CG steps an iteration. K-FAC, EKFAC, Adam and SGD run through ``fb.train``, one update an epoch.

Timing: each method's run is compiled first (``fb.train``: a first run; Levenberg-Marquardt and
Hessian-free: a call with ``goal=inf``, which stops before the first iteration and builds the same
program), then every initialisation's run is timed once, and its seconds are spread evenly over its
iterations (the wall-time axis is ``k * seconds / iterations``). Times depend on the machine and its
load: they are recorded and plotted, never claimed.

    python experiments/kfac_vs_first_order.py [--n 256] [--steps 200] [--second-order-steps 40]
        [--seeds 3] [--seed 0] [--quick] [--out runs/kfac_vs_first_order]

What it finds (the default run, medians over three initialisations; ``table.md``): per iteration
K-FAC and EKFAC reach Adam's final loss after 200 updates in 3.8-8x fewer updates (MLP: 53 and 46;
CNN: 26 and 25; autoencoder: 44 and 41) and end orders of magnitude lower on the two classifiers
(1e-8 to 1e-9 against Adam's 6e-5 and 4e-4); EKFAC ends a little below K-FAC on all three. On the
autoencoder every second-order method levels off near C = 2.7-2.8e-3 (Adam: 3.1e-3 after 200).
Levenberg-Marquardt and Hessian-free, each iteration up to 50 CG steps, reach Adam's final loss in
7-26 iterations. Per second (recorded, not claimed; two busy CPU cores) an Adam step is 10x cheaper
than a K-FAC step on the MLP and 4x on the autoencoder, so Adam reaches its own final loss 2.6x
sooner on the MLP and as soon on the autoencoder; on the CNN a K-FAC step costs 3x an Adam step and
K-FAC gets there 2.4x sooner. An EKFAC step costs 1.2-9x a K-FAC step (the per-example gradients:
9x on the 5544-parameter autoencoder); a Levenberg-Marquardt or Hessian-free iteration 2-23 K-FAC
steps.

Claims tested (iteration counts, medians over the ``--seeds`` initialisations: no claim rests on one
run): on every problem K-FAC and EKFAC reach Adam's final training loss (per initialisation, after
its ``--steps`` updates) in at most half of Adam's iterations (with ``--quick``, 100 updates on 48
examples: in fewer iterations than Adam, 1.6-2x fewer on the MLP, the closest); Adam's final loss is
below SGD with momentum's; Levenberg-Marquardt and Hessian-free lower the loss below a tenth of its
start and (not with ``--quick``) reach Adam's final loss within their own ``--second-order-steps``
iterations.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import cnn_digits  # noqa: E402
import common  # noqa: E402
import digits  # noqa: E402

import fbackprop as fb  # noqa: E402

PROBLEMS = ("mlp", "cnn", "autoencoder")
METHODS = ("K-FAC", "EKFAC", "Adam", "SGD+momentum", "Levenberg-Marquardt", "Hessian-free")
FIRST_ORDER = ("Adam", "SGD+momentum")
COLORS = {
    "K-FAC": "tab:red",
    "EKFAC": "tab:purple",
    "Adam": "tab:blue",
    "SGD+momentum": "tab:green",
    "Levenberg-Marquardt": "tab:orange",
    "Hessian-free": "tab:brown",
}
LOSSES = {"mlp": "cross_entropy", "cnn": "cross_entropy", "autoencoder": "squared_error"}
AE_SIZES = [64, 32, 16, 8, 16, 32, 64]
#: (Adam's rate, SGD's rate) per problem: the best final loss after 200 full-batch steps on 256
#: examples from the first initialisation, of Adam 1e-3 ... 1e-1 and SGD (momentum 0.9) 1e-2 ... 1,
#: one step lower on the CNN, where Adam 0.1 and SGD 0.3 ended 100x higher from other initialisations
RATES = {"mlp": (1e-1, 1.0), "cnn": (3e-2, 0.1), "autoencoder": (1e-2, 0.1)}
CG_STEPS = 50
HALF = 2.0  # K-FAC's and EKFAC's iterations to Adam's final loss: at most Adam's / HALF


def problem(name: str, n: int, seed: int):
    """``(net, x, y)`` for ``name`` on the first ``n`` training digits of the split of ``seed``.

    Args:
        name: one of ``PROBLEMS``.
        n: the number of examples.
        seed: the split's seed (``digits.load``).

    Returns:
        ``(net, x, y)``: ``x`` ``(n, 64)`` (``cnn``: ``(n, 8, 8, 1)``), ``y`` labels ``(n,)``
        (``autoencoder``: ``y = x``), float64.
    """
    if name == "mlp":
        x, y = digits.load(seed).train
        return fb.mlp([64, 32, 10], activation="tanh"), x[:n], y[:n]
    if name == "cnn":
        x, y = cnn_digits.load(seed).train
        return cnn_digits.network((4, 8)), x[:n], y[:n]
    x, y = fb.data.digits(np.float64)
    x = fb.data.split(x, y, (0.6, 0.2, 0.2), seed=seed).train[0][:n] / 16.0
    return fb.mlp(AE_SIZES, activation="tanh"), x, x


def optimizers(net, loss: str, name: str) -> dict:
    """The optax transformations of the ``fb.train`` methods (one object each: compiled once)."""
    adam, sgd = RATES[name]
    return {
        "K-FAC": fb.kfac(net, loss, kind="fisher"),
        "EKFAC": fb.ekfac(net, loss, kind="fisher"),
        "Adam": optax.adam(adam),
        "SGD+momentum": optax.sgd(sgd, momentum=0.9),
    }


def _timed(go) -> tuple:
    t = time.perf_counter()
    out = jax.block_until_ready(go())
    return out, time.perf_counter() - t


def run_train(net, loss, starts, x, y, optimizer, steps: int) -> list[dict]:
    """``steps`` full-batch updates by ``fb.train`` from each start; ``loss[k]``: C after k updates."""
    go = lambda p: fb.train(net, loss, p, x, y, optimizer, epochs=steps, progress=False)  # noqa: E731
    _, compile_s = _timed(lambda: go(starts[0]))
    runs = []
    for p in starts:
        r, seconds = _timed(lambda p=p: go(p))
        k = int(r.epochs)
        runs.append({"loss": np.asarray(r.history.loss[: k + 1]), "seconds": seconds, "iterations": k})
    runs[0]["compile_seconds"] = compile_s
    return runs


def run_second_order(method: str, net, loss, starts, x, y, steps: int) -> list[dict]:
    """Levenberg-Marquardt or Hessian-free for ``steps`` iterations from each start."""
    if method == "Levenberg-Marquardt":
        go = lambda p, goal=0.0: fb.levenberg_marquardt(  # noqa: E731
            net, p, x, y, loss=loss, solver="cg", cg_maxiter=CG_STEPS, max_steps=steps, goal=goal
        )
    else:
        go = lambda p, goal=0.0: fb.optim.hessian_free(  # noqa: E731
            net, p, x, y, loss=loss, cg_iters=CG_STEPS, max_steps=steps, goal=goal
        )
    _, compile_s = _timed(lambda: go(starts[0], np.inf))
    runs = []
    for p in starts:
        r, seconds = _timed(lambda p=p: go(p))
        k = int(r.iterations)
        runs.append(
            {
                "loss": np.asarray(r.history.loss[: k + 1]),
                "seconds": seconds,
                "iterations": k,
                "message": r.message,
            }
        )
    runs[0]["compile_seconds"] = compile_s
    return runs


def first_below(loss: np.ndarray, target: float) -> int | None:
    """The first iteration ``k`` with ``loss[k] <= target``, or None."""
    hit = np.flatnonzero(np.asarray(loss) <= target)
    return int(hit[0]) if hit.size else None


def run(name: str, n: int, seed: int, seeds: int, steps: int, so_steps: int) -> dict:
    """Every method on one problem from ``seeds`` initialisations; the raw histories."""
    net, x, y = problem(name, n, seed)
    loss = LOSSES[name]
    starts = [net.init(jax.random.key(seed + s), np.float64) for s in range(seeds)]
    runs = {
        m: run_train(net, loss, starts, x, y, opt, steps) for m, opt in optimizers(net, loss, name).items()
    }
    for m in ("Levenberg-Marquardt", "Hessian-free"):
        runs[m] = run_second_order(m, net, loss, starts, x, y, so_steps)
    return {"name": name, "loss": loss, "P": net.n_params, "N": int(x.shape[0]), "runs": runs}


def summarize(results: dict) -> dict:
    """Per problem and method, the medians over the initialisations (``claims`` reads these).

    For each run: its final loss, its iterations to Adam's final loss of the same initialisation
    (None when missed) and the ratio of Adam's iterations to those (0 when missed), its seconds per
    iteration and seconds to Adam's final loss.
    """
    out = {}
    for name, r in results.items():
        adam_final = [float(run_["loss"][-1]) for run_ in r["runs"]["Adam"]]
        adam_its = [run_["iterations"] for run_ in r["runs"]["Adam"]]
        m = {"P": r["P"], "N": r["N"], "loss": r["loss"], "methods": {}}
        for method, runs in r["runs"].items():
            its = [first_below(run_["loss"], t) for run_, t in zip(runs, adam_final)]
            per_it = [run_["seconds"] / max(run_["iterations"], 1) for run_ in runs]
            m["methods"][method] = {
                "final_loss": [float(run_["loss"][-1]) for run_ in runs],
                "initial_loss": [float(run_["loss"][0]) for run_ in runs],
                "iterations": [run_["iterations"] for run_ in runs],
                "iterations_to_adam_final": its,
                "ratio_to_adam": [0.0 if k is None else a / max(k, 1) for k, a in zip(its, adam_its)],
                "seconds": [run_["seconds"] for run_ in runs],
                "seconds_per_iteration": per_it,
                "seconds_to_adam_final": [None if k is None else k * s for k, s in zip(its, per_it)],
                "compile_seconds": runs[0].get("compile_seconds"),
            }
            mm = m["methods"][method]
            mm["median_final_loss"] = float(np.median(mm["final_loss"]))
            mm["median_ratio_to_adam"] = float(np.median(mm["ratio_to_adam"]))
            mm["median_seconds_per_iteration"] = float(np.median(per_it))
        out[name] = m
    return out


def claims(metrics: dict, quick: bool = False) -> dict[str, bool]:
    """The claims of the module docstring, from ``summarize``'s medians (``quick``: the ``--quick`` ones)."""
    c = {}
    names = list(metrics)
    if not names:
        return {"every problem ran": False}
    factor = 1.0 if quick else HALF
    for method in ("K-FAC", "EKFAC"):
        what = "in fewer iterations than Adam" if quick else f"in at most 1/{HALF:g} of Adam's iterations"
        c[
            f"{method} reaches Adam's final training loss {what} (median over initialisations) on "
            f"{', '.join(names)}"
        ] = all(metrics[p]["methods"][method]["median_ratio_to_adam"] > factor for p in names)
    c[f"Adam's median final loss is below SGD with momentum's on {', '.join(names)}"] = all(
        metrics[p]["methods"]["Adam"]["median_final_loss"]
        < metrics[p]["methods"]["SGD+momentum"]["median_final_loss"]
        for p in names
    )
    for method in ("Levenberg-Marquardt", "Hessian-free"):
        c[f"{method} lowers the median training loss below 1/10 of its start on {', '.join(names)}"] = all(
            metrics[p]["methods"][method]["median_final_loss"]
            < 0.1 * np.median(metrics[p]["methods"][method]["initial_loss"])
            for p in names
        )
        if quick:
            continue
        c[
            f"{method} reaches Adam's final training loss within its own budget (median over "
            f"initialisations) on {', '.join(names)}"
        ] = all(
            metrics[p]["methods"][method]["median_ratio_to_adam"]
            >= metrics[p]["methods"]["Adam"]["iterations"][0] / metrics[p]["methods"][method]["iterations"][0]
            for p in names
        )
    return c


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def table(metrics: dict) -> str:
    """One row per problem and method: medians over the initialisations."""
    lines = [
        "| problem | method | iterations | final C (median) | Adam's final C reached at iteration (median) "
        "| Adam's iterations / those (median) | ms per iteration | seconds to Adam's final C (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        for method in METHODS:
            x = m["methods"][method]
            its = [k for k in x["iterations_to_adam_final"] if k is not None]
            secs = [s for s in x["seconds_to_adam_final"] if s is not None]
            missed = len(x["iterations_to_adam_final"]) - len(its)
            reached = "-" if not its else f"{np.median(its):.0f}" + (f" ({missed} missed)" if missed else "")
            lines.append(
                f"| {name} (P = {m['P']}, N = {m['N']}) | {method} | {x['iterations'][0]} | "
                f"{x['median_final_loss']:.3g} | {reached} | {x['median_ratio_to_adam']:.3g} | "
                f"{1e3 * x['median_seconds_per_iteration']:.3g} | {_fmt(np.median(secs) if secs else None)} |"
            )
    return "\n".join(lines)


def figure(results: dict):
    """One row per problem: C against iterations and against wall time, log scale, the first
    initialisation (thick lines) and the others (thin)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(results), 2, figsize=(12, 4 * len(results)), constrained_layout=True, squeeze=False
    )
    for row, (name, r) in zip(axes, results.items()):
        for method in METHODS:
            runs = r["runs"][method]
            for j, run_ in enumerate(runs):
                k = np.arange(len(run_["loss"]))
                per = run_["seconds"] / max(run_["iterations"], 1)
                kw = {"color": COLORS[method], "lw": 1.6 if j == 0 else 0.6, "alpha": 1.0 if j == 0 else 0.5}
                row[0].semilogy(k, run_["loss"], label=method if j == 0 else None, **kw)
                row[1].loglog((k + 1) * per, run_["loss"], label=method if j == 0 else None, **kw)
        for ax in row:
            ax.set(ylabel=f"training C ({r['loss']})")
            ax.legend(fontsize=8)
        row[0].set(
            xlabel="iteration (LM: every trial)", title=f"{name}: P = {r['P']}, N = {r['N']}, per iteration"
        )
        row[1].set(xlabel="wall time (s) after compilation", title=f"{name}: against wall time")
    return fig


def _positive(p, args, name: str, minimum: int = 1):
    value = getattr(args, name.replace("-", "_"))
    if value < minimum:
        p.error(f"--{name} must be an integer >= {minimum}; got {value}")


def main(argv=None) -> dict:
    p = common.parser(__doc__, "kfac_vs_first_order")
    p.add_argument("--n", type=int, default=None, help="examples (default 256, quick 48)")
    p.add_argument(
        "--steps", type=int, default=None, help="K-FAC, EKFAC, Adam and SGD updates (default 200, quick 100)"
    )
    p.add_argument(
        "--second-order-steps",
        type=int,
        default=None,
        help="Levenberg-Marquardt trials and Hessian-free iterations (default 40, quick 20)",
    )
    p.add_argument("--seeds", type=int, default=3, help="initialisations (medians over them; >= 3)")
    p.add_argument(
        "--problems", default=",".join(PROBLEMS), help=f"comma-separated, from {', '.join(PROBLEMS)}"
    )
    args = p.parse_args(argv)
    default = lambda v, quick, full: v if v is not None else (quick if args.quick else full)  # noqa: E731
    args.n = default(args.n, 48, 256)
    args.steps = default(args.steps, 100, 200)
    args.second_order_steps = default(args.second_order_steps, 20, 40)
    _positive(p, args, "n", 16)
    _positive(p, args, "steps", 4)
    _positive(p, args, "second-order-steps")
    _positive(p, args, "seeds", 3)
    names = [s for s in args.problems.split(",") if s]
    if not names or any(s not in PROBLEMS for s in names):
        p.error(f"--problems must be comma-separated names from {', '.join(PROBLEMS)}; got {args.problems!r}")
    t0 = time.perf_counter()
    results = {
        name: run(name, args.n, args.seed, args.seeds, args.steps, args.second_order_steps) for name in names
    }
    metrics = summarize(results)
    return common.finish(
        "kfac_vs_first_order",
        args,
        t0,
        metrics,
        claims(metrics, args.quick),
        {"loss_curves": figure(results)},
        table(metrics),
    )


if __name__ == "__main__":
    main()
