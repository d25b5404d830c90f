"""Deep sigmoid networks: the vanishing gradient, and its cure by residual connections and layer norm.

Nielsen (2015, chapter 5) shows that in a deep sigmoid network the early layers learn far slower
than the late ones: backpropagation's step ``delta^{l-1} = f'(z^{l-1}) * (delta^l @ W^l)`` multiplies
by ``f' <= 1/4`` at every layer, so ``||dC/dW^l||`` falls geometrically toward the input (Hochreiter
1991; Bengio, Simard & Frasconi 1994). A residual block ``y = x + F(x)`` (He, Zhang, Ren & Sun 2016)
has the backward step ``dC/dx = g + J_F^T g``: the identity path carries the gradient back unchanged
whatever ``F`` does. Layer normalisation (Ba, Kiros & Hinton 2016) in front of each block's dense
layer ("pre-norm", Xiong et al. 2020) and before the head keeps the sums of the residual stream on one
scale.

Three networks of ``depth`` blocks, width ``--width``, sigmoid throughout, on the first ``--n``
training images of scikit-learn's digits (``digits.load``, 64 standardised pixels, 10 classes):

    plain:        Dense(w) sigmoid -> [Dense(w) sigmoid] x depth -> Dense(10)
    residual:     Dense(w) sigmoid -> [Residual(Dense(w), sigmoid)] x depth -> Dense(10)
    residual_ln:  Dense(w) sigmoid -> [Residual(LayerNorm, Dense(w), sigmoid)] x depth -> LayerNorm
                  -> Dense(10)

For each variant and depth, ``--seeds`` initialisations (Glorot, ``fb.init_many``, vmapped): the
hand-written gradient (``fb.backprop``) at initialisation, and ``||dC/dW^l||_F`` of every dense layer
(``l = 1``: the input layer, then one per block, then the head), as a geometric mean over seeds; then a
short training run from each initialisation (``fb.train_many``, full-batch gradient descent,
``optax.sgd(--lr)``, ``--epochs`` steps) and its final loss relative to its start. The first-layer
gradient's "orders lost" between two depths is ``log10`` of the ratio of the two norms.

    python experiments/residual_depth.py [--depths 4,8,16,32] [--seeds 5] [--width 32] [--n 256]
        [--epochs 100] [--lr 0.5] [--seed 0] [--quick] [--out runs/residual_depth]

Claims tested (quick: depths 4 and 8, 3 seeds): the plain network's first-layer gradient falls by
at least 0.4 orders of magnitude per added block between the shallowest and the deepest network
(worst seed pair; measured about 0.6), while the residual and the residual + layer-norm networks'
stays within a factor 3 (geometric means over seeds); at the deepest depth every seed of both
residual networks trains to below a tenth of its initial loss while every seed of the plain one
stays above 0.7 of it; the hand-written gradients equal jax.grad's on the deepest residual +
layer-norm network (max rel diff <= 1e-10, float64).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402
import digits  # noqa: E402  (the data: digits.load)

import fbackprop as fb  # noqa: E402

VARIANTS = ("plain", "residual", "residual_ln")
LABELS = {"plain": "plain", "residual": "residual", "residual_ln": "residual + layer norm"}
#: the claims' thresholds (measured margins in the module docstring)
ORDERS_PER_BLOCK = 0.4
LEVEL_FACTOR = 3.0
TRAINED, STUCK = 0.1, 0.7


def network(variant: str, depth: int, width: int = 32, activation: str = "sigmoid") -> fb.Network:
    """One of ``VARIANTS`` with ``depth`` blocks of ``width`` units on 64 inputs, 10 logits.

    Args:
        variant: ``"plain"``, ``"residual"`` or ``"residual_ln"`` (see the module docstring).
        depth: the number of blocks.
        width: units per layer.
        activation: every hidden activation (default sigmoid).

    Returns:
        A ``Network`` on ``(N, 64)`` inputs.
    """
    L = fb.layers
    if variant == "plain":
        blocks = [layer for _ in range(depth) for layer in (L.Dense(width), L.Activation(activation))]
    elif variant == "residual":
        blocks = [L.Residual(L.Dense(width), L.Activation(activation)) for _ in range(depth)]
    elif variant == "residual_ln":
        blocks = [L.Residual(L.LayerNorm(), L.Dense(width), L.Activation(activation)) for _ in range(depth)]
        blocks.append(L.LayerNorm())
    else:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    return fb.serial(L.Dense(width), L.Activation(activation), *blocks, L.Dense(10), input_shape=(64,))


def dense_weights(grads: tuple) -> list:
    """The ``W`` of every dense layer, first first, from params or gradients shaped like params: a
    ``{"W", "b"}`` entry is a dense layer; inside a residual block's tuple, its entry with a ``W``."""
    out = []
    for entry in grads:
        if isinstance(entry, dict):
            if "W" in entry:
                out.append(entry["W"])
        else:
            out += dense_weights(entry)
    return out


def norms_at_init(net: fb.Network, params, x, y) -> np.ndarray:
    """``||dC/dW^l||_F`` of every dense layer for each stacked initialisation: ``(seeds, layers)``.

    One hand-written backward pass per seed (``fb.backprop``), vmapped and compiled once.
    """
    grad = fb.backprop(net, "cross_entropy")
    norms = lambda p: jnp.stack([jnp.linalg.norm(W) for W in dense_weights(grad(p, x, y))])
    return np.asarray(jax.jit(jax.vmap(norms))(params))


def geomean(a: np.ndarray) -> np.ndarray:
    """Geometric mean over the leading (seed) axis."""
    return np.exp(np.mean(np.log(a), axis=0))


def run(depths, seeds: int = 5, width: int = 32, n: int = 256, epochs: int = 100, lr: float = 0.5, seed=0):
    """Norms at initialisation and training ratios for every variant and depth.

    Returns:
        ``{"norms": {variant: {depth: (seeds, layers)}}, "ratio": {variant: {depth: (seeds,)}},
        "loss": {variant: {depth: (seeds, epochs + 1)}}, "vs_autodiff": float}``.
    """
    data = digits.load(seed)
    x, y = data.train[0][:n], data.train[1][:n]
    sgd = optax.sgd(lr)  # one object: the same optimizer in every compiled run
    out = {"norms": {}, "ratio": {}, "loss": {}}
    for variant in VARIANTS:
        for key in ("norms", "ratio", "loss"):
            out[key][variant] = {}
        for depth in depths:
            net = network(variant, depth, width)
            params = fb.init_many(net, jax.random.key(seed), seeds, jnp.float64)
            out["norms"][variant][depth] = norms_at_init(net, params, x, y)
            result = fb.train_many(net, "cross_entropy", params, x, y, sgd, epochs=epochs, goal=None)
            loss = np.asarray(result.history.loss)
            out["loss"][variant][depth] = loss
            out["ratio"][variant][depth] = loss[:, -1] / loss[:, 0]
    net = network("residual_ln", max(depths), width)
    p = net.init(jax.random.key(seed), jnp.float64)
    manual, reference = jax.jit(
        lambda p: (fb.backprop(net, "cross_entropy")(p, x, y), fb.autodiff(net, "cross_entropy")(p, x, y))
    )(p)
    out["vs_autodiff"] = float(fb.compare(manual, reference).max_rel)
    return out


def summarize(r: dict, depths) -> tuple[dict, dict]:
    """Metrics (first-layer norms, orders lost, training ratios) and the claims computed from them."""
    lo, hi = min(depths), max(depths)
    first = {v: {d: r["norms"][v][d][:, 0] for d in depths} for v in VARIANTS}
    m = {
        "first_layer_norm": {v: {d: float(geomean(first[v][d])) for d in depths} for v in VARIANTS},
        "ratio_median": {v: {d: float(np.median(r["ratio"][v][d])) for d in depths} for v in VARIANTS},
        "ratio_min": {v: {d: float(r["ratio"][v][d].min()) for d in depths} for v in VARIANTS},
        "ratio_max": {v: {d: float(r["ratio"][v][d].max()) for d in depths} for v in VARIANTS},
        "vs_autodiff_max_rel": r["vs_autodiff"],
    }
    # the plain net's worst case: the largest deep norm against the smallest shallow one
    worst = np.log10(first["plain"][lo].min() / first["plain"][hi].max()) / (hi - lo)
    m["plain_orders_per_block_worst"] = float(worst)
    m["plain_orders_lost"] = float(
        np.log10(m["first_layer_norm"]["plain"][lo] / m["first_layer_norm"]["plain"][hi])
    )
    level = {
        v: m["first_layer_norm"][v][hi] / m["first_layer_norm"][v][lo] for v in ("residual", "residual_ln")
    }
    m["residual_level_factor"] = {v: float(f) for v, f in level.items()}
    within = lambda f: 1 / LEVEL_FACTOR <= f <= LEVEL_FACTOR
    trained = {v: float(r["ratio"][v][hi].max()) for v in ("residual", "residual_ln")}
    stuck = float(r["ratio"]["plain"][hi].min())
    fl = m["first_layer_norm"]
    vanishes = (
        f"the plain sigmoid network's first-layer gradient falls by >= {ORDERS_PER_BLOCK} orders of "
        f"magnitude per added block from depth {lo} to {hi} (worst seed pair {worst:.2f}; geometric "
        f"means {fl['plain'][lo]:.1e} -> {fl['plain'][hi]:.1e})"
    )
    level_text = (
        f"the residual networks' first-layer gradient stays within a factor {LEVEL_FACTOR:g} from depth "
        f"{lo} to {hi} (residual x{level['residual']:.2f}, residual + layer norm x{level['residual_ln']:.2f})"
    )
    trains = (
        f"at depth {hi} every seed of both residual networks trains to below {TRAINED} of its initial loss "
        f"(largest: residual {trained['residual']:.4f}, residual + layer norm {trained['residual_ln']:.4f}) "
        f"while every seed of the plain network stays above {STUCK} of it (smallest {stuck:.3f})"
    )
    twins = (
        f"the hand-written gradients equal jax.grad's on the depth-{hi} residual + layer-norm network "
        f"(max rel diff {r['vs_autodiff']:.1e} <= 1e-10, float64)"
    )
    claims = {
        vanishes: worst >= ORDERS_PER_BLOCK,
        level_text: all(within(f) for f in level.values()),
        trains: max(trained.values()) < TRAINED and stuck > STUCK,
        twins: r["vs_autodiff"] <= 1e-10,
    }
    return m, claims


def figure_norms(r: dict, depths, seeds: int):
    """``||dC/dW^l||`` against the layer index, one panel per variant, one line per depth (log y)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(13, 4.4), sharey=True)
    for ax, variant in zip(axes, VARIANTS):
        for depth in depths:
            a = r["norms"][variant][depth]
            layers = np.arange(1, a.shape[1] + 1)
            (line,) = ax.semilogy(layers, geomean(a), "o-", ms=3, label=f"depth {depth}")
            ax.fill_between(layers, a.min(0), a.max(0), color=line.get_color(), alpha=0.15, lw=0)
        ax.set(title=LABELS[variant], xlabel="dense layer l (1: input layer; last: the head)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel(r"$\|\partial C/\partial W^l\|_F$ at initialisation")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Sigmoid networks on digits: gradient norm per layer at initialisation (geometric mean over {seeds} "
        "seeds; band: min to max)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def figure_training(r: dict, depths, epochs: int, lr: float):
    """Final loss over initial loss against depth for each variant (median, band min to max over seeds)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    for variant in VARIANTS:
        ratios = np.stack([r["ratio"][variant][d] for d in depths])  # (depths, seeds)
        (line,) = ax.semilogy(depths, np.median(ratios, 1), "o-", label=LABELS[variant])
        ax.fill_between(depths, ratios.min(1), ratios.max(1), color=line.get_color(), alpha=0.15, lw=0)
    ax.set(
        xlabel="depth (blocks)",
        ylabel="final loss / initial loss",
        xticks=list(depths),
        title=f"After {epochs} steps of full-batch gradient descent (rate {lr})",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def table(m: dict, depths) -> str:
    """First-layer gradient norm and final/initial loss (median over seeds), per variant and depth."""
    lines = [
        "| variant | " + " | ".join(f"depth {d}: ||dC/dW^1|| / loss ratio" for d in depths) + " |",
        "|---|" + "---|" * len(depths),
    ]
    for v in VARIANTS:
        cells = [f"{m['first_layer_norm'][v][d]:.1e} / {m['ratio_median'][v][d]:.3f}" for d in depths]
        lines.append(f"| {LABELS[v]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = common.parser(__doc__, "residual_depth")
    p.add_argument("--depths", default=None, help="depths, comma-separated (default 4,8,16,32; quick 4,8)")
    p.add_argument("--seeds", type=int, default=None, help="initialisations per network (default 5; quick 3)")
    p.add_argument("--width", type=int, default=32, help="units per layer")
    p.add_argument(
        "--n", type=int, default=256, help="training images used (the first of digits' train part)"
    )
    p.add_argument("--epochs", type=int, default=100, help="full-batch gradient-descent steps")
    p.add_argument("--lr", type=float, default=0.5, help="gradient descent's rate")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    depths = sorted({int(d) for d in (args.depths or ("4,8" if args.quick else "4,8,16,32")).split(",")})
    if len(depths) < 2 or depths[0] < 1:
        p.error(f"--depths needs at least two positive depths; got {args.depths!r}")
    seeds = args.seeds or (3 if args.quick else 5)
    r = run(depths, seeds, args.width, args.n, args.epochs, args.lr, args.seed)
    metrics, claims = summarize(r, depths)
    metrics.update(depths=depths, seeds=seeds, width=args.width, n=args.n, epochs=args.epochs, lr=args.lr)
    metrics["norms_by_layer"] = {v: {d: geomean(r["norms"][v][d]) for d in depths} for v in VARIANTS}
    figures = {
        "norms_by_layer": figure_norms(r, depths, seeds),
        "training": figure_training(r, depths, args.epochs, args.lr),
    }
    return common.finish("residual_depth", args, t0, metrics, claims, figures, table(metrics, depths))


if __name__ == "__main__":
    main()
