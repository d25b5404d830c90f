"""The seed example (the 6-example, 3-input toy of the classic NumPy backpropagation tutorial), trained by
fbackprop's hand-written backward pass inside lax.scan.

``fb.data.seed_example``: 6 examples x 3 inputs, 3 sigmoid hidden units, identity output,
E = 1/(2N) sum (yhat - y)^2, learning rate 0.1, 10000 full-batch gradient-descent steps, the
tutorial's own initial weights (np.random.seed(1), ``fb.data.seed_example_params``). The same run
with jax.grad gradients, and the tutorial's NumPy code itself (experiments/seed_numpy.py), run beside it.

    python experiments/seed_example.py [--steps 10000] [--seed 0] [--quick] [--out runs/seed_example]

Claims tested: the outputs come within 0.01 of the targets (0 1 0 1 1 0); the loss curve equals
the autodiff-trained one; the trained weights equal those of the tutorial's own NumPy code.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402
import seed_numpy  # noqa: E402

import fbackprop as fb  # noqa: E402
from fbackprop.train import full_batch  # noqa: E402


def run(steps: int = 10000, learning_rate: float = 0.1) -> dict:
    net = fb.mlp([3, 3, 1], activation="sigmoid", output="identity", init="uniform")
    x, y = fb.data.seed_example(np.float64)
    params0 = fb.data.seed_example_params(np.float64)
    curves, finals, seconds = {}, {}, {}
    for name, gradient in (("backprop", fb.value_and_backprop), ("autodiff", fb.value_and_autodiff)):
        t0 = time.perf_counter()
        params, losses = jax.block_until_ready(
            full_batch(gradient(net, "squared_error"), optax.sgd(learning_rate), params0, x, y, steps)
        )
        seconds[name] = time.perf_counter() - t0
        curves[name], finals[name] = np.asarray(losses), params
    t0 = time.perf_counter()
    _, hidden, output = seed_numpy.train(
        x, y, *seed_numpy.initial_weights(), alpha=learning_rate, num_iterations=steps
    )
    seconds["numpy"] = time.perf_counter() - t0
    ours = finals["backprop"]
    yhat = np.asarray(net.apply(ours, x))
    weights_gap = max(
        np.abs(ours[0]["W"] - hidden[1:].T).max(),
        np.abs(ours[0]["b"] - hidden[0]).max(),
        np.abs(ours[1]["W"] - output[1:].T).max(),
        np.abs(ours[1]["b"] - output[0]).max(),
    )
    curve_gap = float(np.max(np.abs(curves["backprop"] - curves["autodiff"]) / curves["autodiff"]))
    claims = {
        "outputs within 0.01 of the targets": bool(np.abs(yhat - y).max() < 0.01),
        "loss curve equals the autodiff-trained one (max rel diff <= 1e-10)": curve_gap <= 1e-10,
        "trained weights equal the tutorial's NumPy code (max abs diff <= 1e-10)": bool(weights_gap <= 1e-10),
    }
    return {
        "targets": y.ravel(),
        "outputs": yhat.ravel(),
        "loss_first": curves["backprop"][0],
        "loss_last": curves["backprop"][-1],
        "curve_max_rel_diff": curve_gap,
        "weights_max_abs_diff": weights_gap,
        "seconds_with_compile": seconds,
        "claims": claims,
        "losses": curves,
    }


def report(r: dict) -> str:
    lines = ["target  output (hand-written backprop, 10000 steps)"]
    lines += [f"  {t:.0f}     {o:.6f}" for t, o in zip(r["targets"], r["outputs"])]
    lines.append(
        f"loss {r['loss_first']:.4f} -> {r['loss_last']:.2e}; backprop vs autodiff curve: max rel diff "
        f"{r['curve_max_rel_diff']:.1e}; vs the tutorial's NumPy weights: max abs diff "
        f"{r['weights_max_abs_diff']:.1e}"
    )
    return "\n".join(lines)


def figure(r: dict):
    """Loss curves (hand-written vs autodiff, overlaid) and the final outputs beside the targets."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(len(r["losses"]["backprop"]))
    ax1.loglog(steps + 1, r["losses"]["backprop"], lw=3, alpha=0.5, label="hand-written backprop")
    ax1.loglog(steps + 1, r["losses"]["autodiff"], "k--", lw=1, label="jax.grad")
    ax1.set(xlabel="step + 1", ylabel="C (mean squared error / 2)", title="Seed example: the loss")
    ax1.legend()
    i = np.arange(len(r["targets"]))
    ax2.bar(i - 0.2, r["targets"], 0.4, label="target")
    ax2.bar(i + 0.2, r["outputs"], 0.4, label="output")
    ax2.set(xlabel="example", ylabel="y", title="After training", xticks=i)
    ax2.legend()
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "seed_example")
    p.add_argument(
        "--steps", type=int, default=10000, help="full-batch gradient-descent steps (learning rate 0.1)"
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    r = run(args.steps)
    print(report(r))
    metrics = {k: v for k, v in r.items() if k not in ("claims", "losses")}
    return common.finish("seed_example", args, t0, metrics, r["claims"], {"loss_and_outputs": figure(r)})


if __name__ == "__main__":
    main()
