"""A small CNN learns scikit-learn's 8x8 digits as images, with Adam and the hand-written gradients.

The same 60/20/20 split as ``digits.py`` (the same seed gives the same test images), but each example
kept as an image ``(8, 8, 1)``, channels last, and standardised by one mean and one standard deviation
over every training pixel (a convolution shares its weights over positions, so every position is put
on the same scale; ``digits.py`` standardises each pixel on its own, which blows up the near-constant
border pixels). The network (``--channels C1,C2``, default 16,32; 6090 parameters):

    Conv2D(C1, 3x3, SAME) relu -> AvgPool2D(2x2) -> Conv2D(C2, 3x3, SAME) relu -> MaxPool2D(2x2)
        -> Flatten -> Dense(10)                (8x8x1 -> 8x8xC1 -> 4x4xC1 -> 4x4xC2 -> 2x2xC2 -> 10 logits)

with He's initialisation for the convolutions. Every gradient comes from fbackprop's hand-written
backward pass: a convolution in matrix form on the unfolded patches (im2col), ``z = P W^T + b``,
``dC/dW = delta^T P``, ``dC/db = sum delta``, ``dC/dP = delta W`` folded back (col2im); average pooling
spreads ``delta`` evenly over each window, max pooling routes it to the window's arg-max (LeCun et
al. 1998 for the architecture; Rumelhart, Hinton & Williams 1986 for the backward pass). Adam
(``optax.adam``, Kingma & Ba 2015) on mini-batches reshuffled every epoch, its rate decayed from
``--lr`` to 0 along a half cosine over the run (``optax.cosine_decay_schedule``; Loshchilov & Hutter
2017: the last epochs settle instead of jumping about), the softmax cross-entropy,
the whole run one compiled program (``fb.train``), float64. The first epochs are run again with
``jax.grad``'s gradients (the same shuffles, the same updates: the same history to rounding), and
``digits.py``'s MLP (``64 -> 128 relu -> 10``, its own settings: constant rate) is trained beside it
on the same split for as many epochs.

    python experiments/cnn_digits.py [--epochs 30] [--channels 16,32] [--lr 3e-3] [--batch-size 32]
        [--check-epochs 3] [--seed 0] [--quick] [--out runs/cnn_digits]

Claims tested: test accuracy >= 0.98 at the default settings (30 epochs; >= 0.95 with --quick, 15
epochs); the training loss falls below a tenth of its initial value; training with jax.grad's
gradients gives the same training and validation loss history for the first epochs (max rel diff
<= 1e-10, float64); the CNN's test accuracy is at least the MLP's on the same split at the default
settings (with --quick, within 0.02 of it).
"""

from __future__ import annotations

import functools
import os
import time

# compile-bound (a few seconds of training against three compilations): XLA's cheaper optimisation level
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402
import digits  # noqa: E402  (the MLP, its helpers: confusion, max_rel_diff, run)

import fbackprop as fb  # noqa: E402

SHAPE = (8, 8, 1)  # one image: height, width, channels (channels last)


def load(seed: int = 0) -> fb.data.Split:
    """Digits as images, split 60/20/20 as ``digits.load(seed)`` splits them (the same examples in each
    part), standardised by the training set's pixel mean and standard deviation (two scalars).

    Args:
        seed: the split's seed.

    Returns:
        A ``fb.data.Split`` of ``(x: (N, 8, 8, 1) float64, labels: (N,))`` for train, val and test.
    """
    x, y = fb.data.digits(np.float64)
    parts = fb.data.split(x, y, (0.6, 0.2, 0.2), seed=seed)
    mean, std = parts.train[0].mean(), parts.train[0].std()
    image = lambda a: ((a - mean) / std).reshape((-1, *SHAPE))
    return fb.data.Split(*((image(xx), yy) for xx, yy in parts))


def network(channels: tuple[int, int] = (16, 32)) -> fb.Network:
    """The CNN: two 3x3 ``SAME`` convolutions with relu (He init), average then max pooling, a dense head.

    Args:
        channels: ``(C1, C2)``, the filters of the first and the second convolution.

    Returns:
        A ``Network`` on ``(N, 8, 8, 1)`` images giving ``(N, 10)`` logits.
    """
    L = fb.layers
    c1, c2 = channels
    return fb.serial(
        L.Conv2D(c1, (3, 3), padding="SAME", init_name="he"),
        L.Activation("relu"),
        L.AvgPool2D((2, 2)),
        L.Conv2D(c2, (3, 3), padding="SAME", init_name="he"),
        L.Activation("relu"),
        L.MaxPool2D((2, 2)),
        L.Flatten(),
        L.Dense(digits.CLASSES),
        input_shape=SHAPE,
    )


@functools.lru_cache
def _apply(net: fb.Network):
    """``net.apply`` compiled once per network (and input shape), instead of op by op."""
    return jax.jit(net.apply)


def predict(net: fb.Network, params, x) -> np.ndarray:
    """Predicted classes ``(N,)``: the argmax of the logits, through the compiled ``net.apply``."""
    return np.asarray(jnp.argmax(_apply(net)(params, x), axis=1))


def run(
    data: fb.data.Split,
    net: fb.Network,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    gradient: str = "backprop",
    schedule_epochs: int | None = None,
) -> dict:
    """Train ``net`` from ``seed``'s initialisation with Adam on mini-batches, its rate decayed from
    ``lr`` to 0 along a half cosine over the run (Loshchilov & Hutter 2017).

    Args:
        data: the split (images, labels).
        net: the network.
        epochs: passes over the training set.
        lr: Adam's initial learning rate.
        batch_size: examples per step.
        seed: the initialisation's and the reshuffles' seed.
        gradient: ``"backprop"`` (hand-written) or ``"autodiff"`` (``jax.grad``).
        schedule_epochs: the length of the cosine decay in epochs (default ``epochs``); a run of the
            first epochs of a longer one passes the longer one's, so that both take the same steps.

    Returns:
        A dict: ``params``, ``accuracy`` (train/val/test), ``loss`` and ``val_loss`` histories
        ``(epochs + 1,)``, ``epochs``, ``status``, ``seconds`` (including the compilation) and the test
        set's ``confusion`` matrix.
    """
    k_init, k_shuffle = jax.random.split(jax.random.key(seed))
    params0 = net.init(k_init, jnp.float64)
    (x, y), val, (x_test, y_test) = data
    steps = (schedule_epochs or epochs) * (len(y) // batch_size)  # fb.train: N // batch_size steps a pass
    adam = optax.adam(optax.cosine_decay_schedule(lr, steps))
    t0 = time.perf_counter()
    result = jax.block_until_ready(
        fb.train(
            net,
            "cross_entropy",
            params0,
            x,
            y,
            adam,
            epochs=epochs,
            mode="minibatch",
            batch_size=batch_size,
            key=k_shuffle,
            val=val,
            gradient=gradient,
        )
    )
    seconds = time.perf_counter() - t0
    parts = {"train": (x, y), "val": val, "test": (x_test, y_test)}
    # one call on every part at once: one compilation of the forward pass, not one per part's shape
    every = predict(net, result.params, np.concatenate([xx for xx, _ in parts.values()]))
    ends = np.cumsum([0] + [len(yy) for _, yy in parts.values()])
    pred = {name: every[a:b] for name, a, b in zip(parts, ends[:-1], ends[1:])}
    acc = {name: float(np.mean(pred[name] == yy)) for name, (_, yy) in parts.items()}
    return {
        "params": result.params,
        "accuracy": acc,
        "loss": np.asarray(result.history.loss),
        "val_loss": np.asarray(result.history.val_loss),
        "epochs": int(result.epochs),
        "status": result.message,
        "seconds": seconds,
        "confusion": digits.confusion(y_test, pred["test"]),
    }


def figure_losses(r: dict, check: dict, mlp: dict, channels):
    """Training and validation loss against epoch for the CNN, jax.grad's first epochs, and the MLP."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    epochs = np.arange(len(r["loss"]))
    ax.semilogy(epochs, r["loss"], "o-", ms=3, color="C0", label="CNN, training set (hand-written backprop)")
    ax.semilogy(epochs, r["val_loss"], "s-", ms=3, color="C1", label="CNN, validation set")
    e = np.arange(len(check["loss"]))
    ax.semilogy(e, check["loss"], "kx", ms=8, label=f"CNN, training set, jax.grad (first {e[-1]} epochs)")
    ax.semilogy(e, check["val_loss"], "k+", ms=9, label="CNN, validation set, jax.grad")
    e = np.arange(len(mlp["loss"]))
    ax.semilogy(e, mlp["loss"], "--", color="C0", alpha=0.6, label="MLP 64-128-10, training set")
    ax.semilogy(e, mlp["val_loss"], "--", color="C1", alpha=0.6, label="MLP 64-128-10, validation set")
    ax.set(
        xlabel="epoch (0: before training)",
        ylabel="C: mean cross-entropy",
        title=f"Digits as 8x8 images: CNN conv{channels[0]}-pool-conv{channels[1]}-pool-dense, Adam\n"
        f"test accuracy {r['accuracy']['test']:.3f} (MLP {mlp['accuracy']['test']:.3f})",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5)
    fig.tight_layout()
    return fig


def figure_filters(W0: np.ndarray, W: np.ndarray):
    """The first convolution's 3x3 filters before (top row) and after training (bottom row).

    Args:
        W0: ``(C1, 3, 3, 1)``, the initial filters.
        W: ``(C1, 3, 3, 1)``, the trained filters.
    """
    import matplotlib.pyplot as plt

    c = W.shape[0]
    fig, axes = plt.subplots(2, c, figsize=(0.8 * c + 0.6, 2.3), squeeze=False)
    for row, (name, F) in enumerate((("initial", W0), ("trained", W))):
        lim = float(np.abs(F).max())
        for j in range(c):
            ax = axes[row, j]
            ax.imshow(F[j, :, :, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set(xticks=[], yticks=[])
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("The first convolution's 3x3 filters (red +, blue -; each row on its own scale)", fontsize=9)
    fig.tight_layout()
    return fig


def table(r: dict, mlp: dict, n_params: int, mlp_params: int) -> str:
    """Accuracy on each part, parameters and training seconds, CNN beside MLP."""
    lines = [
        "| network | parameters | accuracy train | accuracy val | accuracy test | epochs | training seconds "
        "(incl. compile) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res, p in (("CNN", r, n_params), ("MLP 64-128-10 (digits.py)", mlp, mlp_params)):
        a = res["accuracy"]
        lines.append(
            f"| {name} | {p} | {a['train']:.4f} | {a['val']:.4f} | {a['test']:.4f} | {res['epochs']} | "
            f"{res['seconds']:.1f} |"
        )
    return "\n".join(lines)


def channels_arg(text: str) -> tuple[int, int]:
    """``"16,32"`` -> ``(16, 32)``: two positive channel counts (an ``argparse`` type)."""
    import argparse

    try:
        c = tuple(int(s) for s in text.split(","))
    except ValueError:
        c = ()
    if len(c) != 2 or min(c) < 1:
        raise argparse.ArgumentTypeError(f"expected two positive integers C1,C2 (e.g. 16,32); got {text!r}")
    return c


def main(argv=None) -> dict:
    p = common.parser(__doc__, "cnn_digits")
    p.add_argument(
        "--epochs", type=int, default=None, help="passes over the training set (default 30; quick 15)"
    )
    p.add_argument(
        "--channels", type=channels_arg, default=(16, 32), help="filters of the two convolutions, C1,C2"
    )
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's initial learning rate (cosine decay to 0)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per mini-batch")
    p.add_argument("--check-epochs", type=int, default=3, help="epochs rerun with jax.grad's gradients")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    epochs = args.epochs or (15 if args.quick else 30)
    threshold, mlp_slack = (0.95, 0.02) if args.quick else (0.98, 0.0)
    data = load(args.seed)
    net = network(args.channels)
    r = run(data, net, epochs, args.lr, args.batch_size, args.seed)
    k = min(args.check_epochs, epochs)
    check = run(
        data, net, k, args.lr, args.batch_size, args.seed, gradient="autodiff", schedule_epochs=epochs
    )
    gap = max(
        digits.max_rel_diff(r["loss"][: k + 1], check["loss"]),
        digits.max_rel_diff(r["val_loss"][: k + 1], check["val_loss"]),
    )
    mlp = digits.run(digits.load(args.seed), 128, epochs, args.lr, args.batch_size, args.seed)
    cnn_acc, mlp_acc = r["accuracy"]["test"], mlp["accuracy"]["test"]
    W0 = np.asarray(net.init(jax.random.split(jax.random.key(args.seed))[0], jnp.float64)[0]["W"])
    metrics = {
        "accuracy": r["accuracy"],
        "mlp_accuracy": mlp["accuracy"],
        "n_params": net.n_params,
        "mlp_n_params": mlp["net"].n_params,
        "channels": list(args.channels),
        "epochs": r["epochs"],
        "status": r["status"],
        "train_seconds": r["seconds"],
        "mlp_train_seconds": mlp["seconds"],
        "loss_first": float(r["loss"][0]),
        "loss_last": float(r["loss"][-1]),
        "val_loss_last": float(r["val_loss"][-1]),
        "history_vs_autodiff_max_rel": gap,
        "check_epochs": k,
        "confusion_test": r["confusion"],
        "sizes": {"train": len(data.train[1]), "val": len(data.val[1]), "test": len(data.test[1])},
    }
    n_test = len(data.test[1])
    vs_mlp = (
        f"the CNN's test accuracy is at least the MLP's on the same split ({cnn_acc:.3f} vs {mlp_acc:.3f}, "
        f"{epochs} epochs each)"
        if mlp_slack == 0
        else f"the CNN's test accuracy is within {mlp_slack} of the MLP's or above it on the same split "
        f"({cnn_acc:.3f} vs {mlp_acc:.3f}, {epochs} epochs each)"
    )
    claims = {
        f"test accuracy >= {threshold} after {r['epochs']} epochs (measured {cnn_acc:.3f} on {n_test} "
        "held-out images)": cnn_acc >= threshold,
        f"the training loss falls below a tenth of its initial value ({r['loss'][0]:.3f} -> "
        f"{r['loss'][-1]:.4f})": r["loss"][-1] < 0.1 * r["loss"][0],
        f"training with jax.grad's gradients gives the same train and validation loss history for {k} epochs "
        f"(max rel diff {gap:.1e} <= 1e-10, float64)": gap <= 1e-10,
        vs_mlp: cnn_acc >= mlp_acc - mlp_slack,
    }
    figures = {
        "loss_curves": figure_losses(r, check, mlp, args.channels),
        "filters": figure_filters(W0, np.asarray(r["params"][0]["W"])),
    }
    return common.finish(
        "cnn_digits", args, t0, metrics, claims, figures, table(r, mlp, net.n_params, mlp["net"].n_params)
    )


if __name__ == "__main__":
    main()
