"""Vanishing and exploding gradients at initialisation: ||dC/dW^l|| and ||delta^l|| layer by layer.

Exploding and vanishing gradients are among the main difficulties of gradient descent with
backpropagation in deep networks (Hochreiter 1991; Bengio, Simard & Frasconi 1994; Glorot & Bengio
2010), with the related trouble of crossing plateaus. The backward recursion shows where they come
from (backpropagation in matrix form, one example a row as everywhere in fbackprop):

    delta^{l-1} = f'(z^{l-1}) * (delta^l @ W^l),      dC/dW^l = delta^l.T @ a^{l-1}

Each step back multiplies delta by ``W^l`` and by ``f'(z^{l-1})``; over ``D`` hidden layers the
product shrinks or grows geometrically unless the two balance. Sigmoid has ``f' <= 1/4``, so it
loses a factor at every layer whatever the weights' scale; tanh (``f'(0) = 1``) with Glorot's
``Var W = 2 / (fan_in + fan_out)`` and relu (``f' in {0, 1}``, half the units off) with He's
``Var W = 2 / fan_in`` keep ``||delta^l||`` roughly constant; the classic tutorial's ``W, b ~ U[-1, 1]``
(``Var W = 1/3``, far above ``1 / fan_in``) makes tanh's gradient grow toward the input and
relu's blow up in scale. With relu, ``||dC/dW^l|| = ||delta^l.T @ a^{l-1}||`` stays level under
every initialiser, because ``a^{l-1}`` shrinks going forward by the factor ``delta^l`` shrinks going
back; ``||delta^l||`` shows the difference the initialiser makes.

The experiment: one fixed random batch (``x ~ N(0, 1)``, random class labels), cross-entropy on
logits, networks ``[width] + [width] * depth + [10]`` with sigmoid, tanh or relu hidden layers and
each initialiser (uniform on [-1, 1] as in the classic NumPy tutorial, glorot, he, lecun). For each,
``--seeds`` independent
initialisations (``fb.init_many``, vmapped), one hand-written forward/backward pass each
(``fb.backprop_trace``), and the geometric mean over seeds of ``||dC/dW^l||_F`` and
``||delta^l||_F`` (delta over the whole batch, ``dC/dz^l`` with the 1/N of the batch mean).
The "per-layer gain" is ``(||.^1|| / ||.^L||)^(1 / depth)``: the average factor one step of the
backward pass multiplies the norm by (below 1: vanishing toward the input; above 1: exploding).
A second figure shows the first layer's gradient norm against depth.

    python experiments/vanishing_gradients.py [--depth 16] [--width 64] [--seeds 8] [--seed 0]
        [--quick] [--out runs/vanishing_gradients]

Claims tested: with sigmoid and a scaled initialiser (glorot, he, lecun) the first layer's gradient
is below 0.5^depth of the last layer's, and even with the uniform [-1, 1] init below 0.8^depth;
relu + He and tanh + Glorot keep ||dC/dW^l|| and ||delta^l|| within a factor of 10 across layers;
relu with Glorot or LeCun lets ||delta^l|| shrink toward the input (gain below 0.85 a layer) where
He's factor 2 keeps it (gain 0.85 to 1.2); the uniform [-1, 1] init makes tanh's gradient grow toward
the input (gain above 1.2) and every relu layer's gradient exceed 2^depth; the hand-written norms
equal jax.grad's (max rel diff <= 1e-10, float64).
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

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402

import fbackprop as fb  # noqa: E402

ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("uniform", "glorot", "he", "lecun")
#: the initialiser each activation was designed for (Glorot & Bengio 2010 for tanh, He et al. 2015 for relu)
MATCHED = {"sigmoid": "glorot", "tanh": "glorot", "relu": "he"}
N_OUT = 10


def batch(seed: int, n: int, n_in: int, n_out: int = N_OUT) -> tuple[np.ndarray, np.ndarray]:
    """The fixed batch: ``x: (n, n_in) ~ N(0, 1)`` (float64) and class labels ``(n,)`` in ``0..n_out-1``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in), dtype=np.float64), rng.integers(0, n_out, n).astype(np.int32)


def sizes(depth: int, width: int) -> list[int]:
    """``[width] + [width] * depth + [10]``: ``depth`` hidden layers, ``L = depth + 1`` dense layers."""
    return [width] + [width] * depth + [N_OUT]


def init_all(depth: int, width: int, seeds: int, key) -> tuple:
    """Every initialiser's ``seeds`` independent initialisations (``fb.init_many``, the same keys
    for each), stacked on one leading axis of ``len(INITS) * seeds`` networks, initialiser-major.
    The initialiser does not depend on the activation, so these serve every activation."""
    each = [fb.init_many(fb.mlp(sizes(depth, width), init=name), key, seeds, jnp.float64) for name in INITS]
    return jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *each)


def truncate(params: tuple, depth: int) -> tuple:
    """A shallower network's parameters from a deeper one's: its first ``depth`` dense layers and
    its output layer (every hidden layer is ``width x width``, so they fit and have the same law)."""
    return tuple(params[:depth]) + (params[-1],)


def norms_fn(activation: str, depth: int, width: int, x, y):
    """``params (stacked) -> (||dC/dW^l||_F, ||delta^l||_F)``, each ``(networks, L)``.

    One compiled program per activation and depth, vmapped over every initialiser and seed: the
    initialiser only changes the numbers in ``params``, not the network's layers.
    """
    net = fb.mlp(sizes(depth, width), activation=activation, output="identity")
    trace = fb.backprop_trace(net, "cross_entropy")

    def norms(params):
        t = trace(params, x, y)  # one forward and one hand-written backward pass
        gW = jnp.stack([jnp.linalg.norm(g["W"]) for g in t.grads])  # ||delta^l.T @ a^{l-1}||_F
        d = jnp.stack([jnp.linalg.norm(delta) for delta in t.delta])  # ||delta^l||_F, l = 1..L
        return gW, d

    return jax.jit(jax.vmap(norms))


def geomean(a: np.ndarray) -> np.ndarray:
    """Geometric mean over the leading (seed) axis: the norms span many decades."""
    return np.exp(np.mean(np.log(a), axis=0))


def gain(norms: np.ndarray) -> float:
    """``(||.^1|| / ||.^L||)^(1 / (L - 1))``: the mean factor per step of the backward pass."""
    return float((norms[0] / norms[-1]) ** (1.0 / (len(norms) - 1)))


def spread(norms: np.ndarray) -> float:
    """``max_l / min_l`` of the per-layer norms."""
    return float(norms.max() / norms.min())


def run(depths=(16,), width: int = 64, seeds: int = 8, n: int = 128, seed: int = 0) -> dict:
    """Per-layer norms for every activation x initialiser x depth: ``r["W"][depth][act][init]``
    and ``r["delta"][depth][act][init]`` are ``(seeds, depth + 1)`` arrays. Every run sees the same
    batch and the same initial weights (a shallower net's are a prefix of the deepest's, see
    ``truncate``). ``r["vs_autodiff"]``: the hand-written gradient against jax.grad on the
    deepest sigmoid + Glorot network (first seed)."""
    x, y = batch(seed, n, width)
    out = {"W": {}, "delta": {}, "width": width}
    deepest = init_all(
        max(depths), width, seeds, jax.random.key(seed)
    )  # drawn once; shallower nets take a prefix
    for depth in depths:
        params = truncate(deepest, depth)
        out["W"][depth], out["delta"][depth] = {}, {}
        for act in ACTIVATIONS:
            gW, d = (
                np.asarray(a).reshape(len(INITS), seeds, depth + 1)
                for a in norms_fn(act, depth, width, x, y)(params)
            )
            out["W"][depth][act] = dict(zip(INITS, gW))
            out["delta"][depth][act] = dict(zip(INITS, d))
    # the widest-ranging case (sigmoid: norms from ~1e-10 to 1), hand-written against jax.grad
    net = fb.mlp(sizes(max(depths), width), activation="sigmoid", init="glorot")
    params = jax.tree.map(lambda leaf: leaf[INITS.index("glorot") * seeds], deepest)
    manual, reference = jax.jit(
        lambda p: (fb.backprop(net, "cross_entropy")(p, x, y), fb.autodiff(net, "cross_entropy")(p, x, y))
    )(params)
    per_layer = [abs(np.linalg.norm(m["W"]) / np.linalg.norm(r["W"]) - 1) for m, r in zip(manual, reference)]
    out["vs_autodiff"] = float(max(max(per_layer), fb.compare(manual, reference).max_rel))
    return out


def summarize(r: dict, depth: int) -> tuple[dict, dict]:
    """Per-pair gains and spreads at ``depth`` (metrics) and the claims computed from them."""
    m = {}
    for kind in ("W", "delta"):
        for act in ACTIVATIONS:
            for name in INITS:
                g = geomean(r[kind][depth][act][name])
                m[f"{kind}_gain/{act}/{name}"] = gain(g)
                m[f"{kind}_spread/{act}/{name}"] = spread(g)
                m[f"{kind}_first_over_last/{act}/{name}"] = float(g[0] / g[-1])
                m[f"{kind}_min/{act}/{name}"] = float(g.min())
    m["vs_autodiff_max_rel"] = r["vs_autodiff"]
    G = lambda kind, act, name: m[f"{kind}_gain/{act}/{name}"]
    S = lambda kind, act, name: m[f"{kind}_spread/{act}/{name}"]
    sig_scaled = max(G("W", "sigmoid", k) for k in ("glorot", "he", "lecun"))
    relu_small = max(G("delta", "relu", k) for k in ("glorot", "lecun"))
    L = depth + 1
    claims = {
        f"sigmoid vanishes: with glorot, he and lecun, ||dC/dW^1|| / ||dC/dW^L|| < 0.5^{depth} = "
        f"{0.5**depth:.1e} "
        f"(largest: {sig_scaled**depth:.1e}, a gain of {sig_scaled:.2f} a layer; f' <= 1/4)": sig_scaled
        < 0.5,
        f"sigmoid vanishes even with the uniform [-1, 1] init: ||dC/dW^1|| / ||dC/dW^L|| < 0.8^{depth} = "
        f"{0.8**depth:.1e} (measured {G('W', 'sigmoid', 'uniform') ** depth:.1e})": G(
            "W", "sigmoid", "uniform"
        )
        < 0.8,
        f"relu + He keeps ||dC/dW^l|| and ||delta^l|| within a factor 10 across the {L} layers "
        f"(max/min {S('W', 'relu', 'he'):.1f} and {S('delta', 'relu', 'he'):.1f})": S("W", "relu", "he") < 10
        and S("delta", "relu", "he") < 10,
        f"tanh + Glorot keeps ||dC/dW^l|| and ||delta^l|| within a factor 10 across the {L} layers "
        f"(max/min {S('W', 'tanh', 'glorot'):.1f} and {S('delta', 'tanh', 'glorot'):.1f})": S(
            "W", "tanh", "glorot"
        )
        < 10
        and S("delta", "tanh", "glorot") < 10,
        f"relu with Glorot or LeCun: ||delta^l|| shrinks toward the input (gain < 0.85 a layer; measured "
        f"{relu_small:.2f}); with He it does not (gain in [0.85, 1.2]; measured "
        f"{G('delta', 'relu', 'he'):.2f})": relu_small < 0.85 and 0.85 <= G("delta", "relu", "he") <= 1.2,
        "the uniform [-1, 1] init explodes with tanh: ||dC/dW^l|| grows toward the input (gain > 1.2 a "
        "layer; "
        f"measured {G('W', 'tanh', 'uniform'):.2f})": G("W", "tanh", "uniform") > 1.2,
        f"the uniform [-1, 1] init explodes with relu: every ||dC/dW^l|| > 2^{depth} = {2.0**depth:.0f} "
        f"(smallest {m['W_min/relu/uniform']:.1e}; with He: {m['W_min/relu/he']:.1f})": m[
            "W_min/relu/uniform"
        ]
        > 2.0**depth,
        f"the hand-written backward pass gives jax.grad's gradients on the {depth}-hidden-layer sigmoid net "
        f"(max rel diff {r['vs_autodiff']:.1e} <= 1e-10, float64)": r["vs_autodiff"] <= 1e-10,
    }
    return m, claims


def first_layer(r: dict, depths) -> dict:
    """``{"act/init": [||dC/dW^1|| at each depth]}`` (geometric mean over seeds)."""
    return {
        f"{act}/{name}": [float(geomean(r["W"][d][act][name])[0]) for d in depths]
        for act in ACTIVATIONS
        for name in INITS
    }


def figure(r: dict, depth: int, seeds: int):
    """Two rows (||dC/dW^l||, ||delta^l||) x one column per activation; log y, one line per
    initialiser (geometric mean over seeds, shaded from the smallest to the largest seed)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, len(ACTIVATIONS), figsize=(13, 7.5), sharex=True)
    rows = (
        ("W", r"$\|\partial C/\partial W^l\|_F$"),
        ("delta", r"$\|\delta^l\|_F$  ($\delta^l = \partial C/\partial z^l$)"),
    )
    for j, act in enumerate(ACTIVATIONS):
        for i, (kind, label) in enumerate(rows):
            ax = axes[i, j]
            for name in INITS:
                a = r[kind][depth][act][name]
                layers = np.arange(1, a.shape[1] + 1)
                (line,) = ax.semilogy(
                    layers, geomean(a), "o-", ms=3, label=name + (" [-1, 1]" if name == "uniform" else "")
                )
                ax.fill_between(layers, a.min(0), a.max(0), color=line.get_color(), alpha=0.15, lw=0)
            ax.set(
                ylabel=label if j == 0 else None,
                xlabel="layer l (1: next to the input, L: output)" if i == 1 else None,
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, which="major", alpha=0.3)
            if i == 0:
                ax.set_title(f"{act} hidden layers")
        axes[0, j].legend(fontsize=8, title="initialiser", title_fontsize=8)
    fig.suptitle(
        f"Gradient norms at initialisation, {depth} hidden layers x {r['width']} units (cross-entropy, one "
        f"fixed random batch; geometric mean over {seeds} seeds, band: min to max)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def figure_depth(first: dict, depths, seeds: int):
    """``||dC/dW^1||`` against depth: the uniform [-1, 1] init (dashed) and each activation's matched one."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for color, act in zip(("C0", "C1", "C2"), ACTIVATIONS):
        for name, style in ((MATCHED[act], "-"), ("uniform", "--")):
            ax.semilogy(
                depths,
                first[f"{act}/{name}"],
                style,
                marker="o",
                ms=4,
                color=color,
                label=f"{act} + {name}" + (" [-1, 1]" if name == "uniform" else ""),
            )
    ax.set(
        xlabel="depth (hidden layers)",
        ylabel=r"$\|\partial C/\partial W^1\|_F$ (first layer)",
        xticks=list(depths),
        title=f"First-layer gradient norm at initialisation vs depth\n(geometric mean over {seeds} seeds)",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def table(m: dict, depth: int) -> str:
    """Per-layer gain of ||dC/dW^l|| (and of ||delta^l||) for every activation x initialiser."""
    lines = [
        f"Per-layer gain (||.^1|| / ||.^L||)^(1/{depth}) of ||dC/dW^l|| / of ||delta^l|| at initialisation "
        "(< 1: vanishing toward the input, > 1: exploding)",
        "",
        "| hidden activation | " + " | ".join(INITS) + " |",
        "|---|" + "---|" * len(INITS),
    ]
    for act in ACTIVATIONS:
        cells = [f"{m[f'W_gain/{act}/{k}']:.2f} / {m[f'delta_gain/{act}/{k}']:.2f}" for k in INITS]
        lines.append(f"| {act} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = common.parser(__doc__, "vanishing_gradients")
    p.add_argument(
        "--depth", type=int, default=None, help="hidden layers of the deep net (default 16; quick 8)"
    )
    p.add_argument("--width", type=int, default=64, help="units per hidden layer (and inputs)")
    p.add_argument("--seeds", type=int, default=None, help="initialisations averaged (default 8; quick 4)")
    p.add_argument("--batch", type=int, default=128, help="examples in the fixed batch")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    depth = args.depth or (8 if args.quick else 16)
    seeds = args.seeds or (4 if args.quick else 8)
    depths = sorted({d for d in ((1,) if args.quick else (1, 2, 4, 8)) if d < depth} | {depth})
    r = run(depths, args.width, seeds, args.batch, args.seed)
    metrics, claims = summarize(r, depth)
    first = first_layer(r, depths)
    metrics.update(
        depth=depth,
        width=args.width,
        seeds=seeds,
        batch=args.batch,
        depths=depths,
        first_layer_vs_depth=first,
    )
    figures = {
        "norms_by_layer": figure(r, depth, seeds),
        "first_layer_vs_depth": figure_depth(first, depths, seeds),
    }
    return common.finish("vanishing_gradients", args, t0, metrics, claims, figures, table(metrics, depth))


if __name__ == "__main__":
    main()
