"""An MLP learns scikit-learn's handwritten digits with Adam and the hand-written gradients.

scikit-learn's shipped 8x8 digits (1797 images, ten classes; no download), split 60/20/20 into
train/validation/test and standardised by the training set's statistics. The network is
``64 -> hidden (relu, He init) -> 10`` (logits), the cost the batch mean of the softmax
cross-entropy (the usual cost for classification: Bishop 2006, section 4.3.4), and every gradient
comes from fbackprop's matrix-form backward pass (Rumelhart, Hinton & Williams 1986):

    delta^L = (softmax(z^L) - y) / N,   delta^{l-1} = f'(z^{l-1}) * (delta^l @ W^l),   dC/dW^l = delta^l.T
    @ a^{l-1}

fed to ``optax.adam`` (Kingma & Ba 2015) in stochastic (mini-batch) mode: the training set is reshuffled
every epoch and cut into batches. The whole run is one compiled program (``fb.train``), float64.
The first epochs are run again with ``jax.grad``'s gradients: the same shuffles and updates, so
the same history to rounding.

    python experiments/digits.py [--epochs 30] [--hidden 128] [--lr 3e-3] [--batch-size 32] [--seed 0]
        [--quick] [--out runs/digits]

Claims tested: test accuracy >= 0.95 at the default settings (>= 0.92 with --quick, 10 epochs);
the training loss falls below a tenth of its initial value; training with jax.grad's gradients
gives the same loss history for the first epochs (max rel diff <= 1e-10, float64).
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

CLASSES = 10


def load(seed: int = 0) -> fb.data.Split:
    """Digits split 60/20/20 (shuffled by ``seed``), ``x`` standardised by the train set: ``(N, 64)``
    float64, labels ``(N,)``."""
    x, y = fb.data.digits(np.float64)
    parts = fb.data.split(x, y, (0.6, 0.2, 0.2), seed=seed)
    _, _, x_train, x_val, x_test = fb.data.standardize(parts.train[0], parts.val[0], parts.test[0])
    return fb.data.Split((x_train, parts.train[1]), (x_val, parts.val[1]), (x_test, parts.test[1]))


def network(hidden: int = 128) -> fb.Network:
    """``64 -> hidden -> 10``: relu hidden layer with He init, identity output (logits for the
    cross-entropy)."""
    return fb.mlp([64, hidden, CLASSES], activation="relu", output="identity", init="he")


def predict(net: fb.Network, params, x) -> np.ndarray:
    """Predicted classes ``(N,)``: the argmax of the logits."""
    return np.asarray(jnp.argmax(net.apply(params, x), axis=1))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """``M[i, j]`` = how many examples of class ``i`` were predicted as ``j``: ``(classes, classes)``."""
    M = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(M, (y_true, y_pred), 1)
    return M


def run(
    data: fb.data.Split,
    hidden: int = 128,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    gradient: str = "backprop",
) -> dict:
    """Train from ``seed``'s initialisation; accuracy on each part, the loss histories, the seconds."""
    net = network(hidden)
    k_init, k_shuffle = jax.random.split(jax.random.key(seed))
    params0 = net.init(k_init, jnp.float64)
    (x, y), val, (x_test, y_test) = data
    t0 = time.perf_counter()
    result = jax.block_until_ready(
        fb.train(
            net,
            "cross_entropy",
            params0,
            x,
            y,
            optax.adam(lr),
            epochs=epochs,
            mode="minibatch",
            batch_size=batch_size,
            key=k_shuffle,
            val=val,
            gradient=gradient,
        )
    )
    seconds = time.perf_counter() - t0
    acc = {
        name: float(np.mean(predict(net, result.params, xx) == yy))
        for name, (xx, yy) in (("train", (x, y)), ("val", val), ("test", (x_test, y_test)))
    }
    return {
        "net": net,
        "params": result.params,
        "accuracy": acc,
        "loss": np.asarray(result.history.loss),
        "val_loss": np.asarray(result.history.val_loss),
        "epochs": int(result.epochs),
        "status": result.message,
        "seconds": seconds,
        "confusion": confusion(y_test, predict(net, result.params, x_test)),
    }


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / |b|`` over matching entries (loss histories)."""
    return float(np.max(np.abs(a - b) / np.abs(b)))


def figure_losses(r: dict, check: dict | None = None):
    """Training and validation loss against epoch; the jax.grad run's first epochs on top."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.3))
    epochs = np.arange(len(r["loss"]))
    ax.semilogy(epochs, r["loss"], "o-", ms=3, label="training set (hand-written backprop)")
    ax.semilogy(epochs, r["val_loss"], "s-", ms=3, label="validation set")
    if check is not None:
        e = np.arange(len(check["loss"]))
        ax.semilogy(e, check["loss"], "kx", ms=8, label=f"training set, jax.grad (first {e[-1]} epochs)")
        ax.semilogy(e, check["val_loss"], "k+", ms=9, label="validation set, jax.grad")
    ax.set(
        xlabel="epoch (0: before training)",
        ylabel="C: mean cross-entropy",
        title=f"Digits: MLP 64-{r['net'].sizes[1]}-10, Adam, mini-batches\n"
        f"test accuracy {r['accuracy']['test']:.3f}",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_confusion(r: dict):
    """The test set's confusion matrix, each cell annotated with its count."""
    import matplotlib.pyplot as plt

    M = r["confusion"]
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = ax.imshow(M, cmap="Blues")
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if M[i, j]:
                ax.text(
                    j,
                    i,
                    str(M[i, j]),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if M[i, j] > M.max() / 2 else "black",
                )
    ax.set(
        xticks=range(CLASSES),
        yticks=range(CLASSES),
        xlabel="predicted digit",
        ylabel="true digit",
        title=f"Digits test set: confusion matrix ({M.sum()} images, "
        f"{np.trace(M)} correct = {r['accuracy']['test']:.3f})",
    )
    fig.colorbar(im, ax=ax, label="images", shrink=0.85)
    fig.tight_layout()
    return fig


def table(r: dict) -> str:
    """Accuracy on each part, epochs, and the training time."""
    a = r["accuracy"]
    lines = [
        "| accuracy train | accuracy val | accuracy test | epochs | training seconds (incl. compile) |",
        "|---|---|---|---|---|",
        f"| {a['train']:.4f} | {a['val']:.4f} | {a['test']:.4f} | {r['epochs']} | {r['seconds']:.1f} |",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = common.parser(__doc__, "digits")
    p.add_argument(
        "--epochs", type=int, default=None, help="passes over the training set (default 30; quick 10)"
    )
    p.add_argument("--hidden", type=int, default=128, help="units in the hidden layer")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    p.add_argument("--batch-size", type=int, default=32, help="examples per mini-batch")
    p.add_argument("--check-epochs", type=int, default=3, help="epochs rerun with jax.grad's gradients")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    epochs = args.epochs or (10 if args.quick else 30)
    threshold = 0.92 if args.quick else 0.95
    data = load(args.seed)
    r = run(data, args.hidden, epochs, args.lr, args.batch_size, args.seed)
    k = min(args.check_epochs, epochs)
    check = run(data, args.hidden, k, args.lr, args.batch_size, args.seed, gradient="autodiff")
    gap = max(
        max_rel_diff(r["loss"][: k + 1], check["loss"]),
        max_rel_diff(r["val_loss"][: k + 1], check["val_loss"]),
    )
    metrics = {
        "accuracy": r["accuracy"],
        "epochs": r["epochs"],
        "status": r["status"],
        "train_seconds": r["seconds"],
        "loss_first": float(r["loss"][0]),
        "loss_last": float(r["loss"][-1]),
        "val_loss_last": float(r["val_loss"][-1]),
        "val_loss_min_epoch": int(np.nanargmin(r["val_loss"])),
        "history_vs_autodiff_max_rel": gap,
        "check_epochs": k,
        "confusion_test": r["confusion"],
        "sizes": {"train": len(data.train[1]), "val": len(data.val[1]), "test": len(data.test[1])},
    }
    claims = {
        f"test accuracy >= {threshold} after {r['epochs']} epochs (measured {r['accuracy']['test']:.3f} on "
        f"{len(data.test[1])} held-out images)": r["accuracy"]["test"] >= threshold,
        f"the training loss falls below a tenth of its initial value ({r['loss'][0]:.3f} -> "
        f"{r['loss'][-1]:.4f})": r["loss"][-1] < 0.1 * r["loss"][0],
        f"training with jax.grad's gradients gives the same train and validation loss history for {k} epochs "
        f"(max rel diff {gap:.1e} <= 1e-10, float64)": gap <= 1e-10,
    }
    figures = {"loss_curves": figure_losses(r, check), "confusion_matrix": figure_confusion(r)}
    return common.finish("digits", args, t0, metrics, claims, figures, table(r))


if __name__ == "__main__":
    main()
