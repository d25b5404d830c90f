"""Gradient check: hand-written backprop vs jax.grad, forward mode and finite differences, float32 and
float64.

A matrix of networks (activations x losses x depths), each checked in both dtypes.

    python experiments/gradcheck.py [--quick] [--seed 0] [--out runs/gradcheck]

Every network is checked four ways (backpropagation in matrix form, Rumelhart, Hinton & Williams 1986:
delta^{l-1} = f'(z^{l-1}) * (W^l)^T delta^l, dC/dW^l = delta^l (a^{l-1})^T): ``fb.backprop`` (hand-written),
``fb.autodiff`` (jax.grad, the reference), ``fb.forward_mode`` (one JVP per parameter) and
``fb.numerical_grad`` (central differences). Errors are ``fb.compare``'s max relative error
(largest |difference| over the leaf's largest entry) against jax.grad in the same dtype; the
float32 networks are the float64 ones rounded. Matrix: every activation (two hidden layers)
with every loss, and mixed stacks of depth 1, 3 and 5, in both dtypes (``--quick``: a subset
that still has every activation, every loss x dtype and two depths).

Tolerances are ``fb.tolerance(dtype, finite_differences=...)``: exact methods 1e-10 (float64)
and 1e-4 (float32); central differences 1e-6 (float64) and 5e-2 (float32).

Finite differences. Steps: h = 1e-6 in float64; in float32 the library's h = eps_mach^(1/3) =
4.9e-3, which balances the truncation error O(h^2) against the rounding error O(eps_mach |C| / h)
(h = 1e-6 would leave only rounding noise, eps_mach / h ~ 0.1). That rounding error is absolute,
the same for every entry, so a central difference is judged against the whole gradient's largest
entry (``fb.compare`` of the flattened gradients), not each layer's: in a deep sigmoid stack the
first layer's gradient is small, and its per-leaf relative error reaches 1e-2 to 4e-2 (seeds 0-3)
from rounding alone, while against the whole gradient the worst is ~1e-3 (per-leaf errors and
cosines are recorded too). At h = 4.9e-3 a relu kink inside [z - h, z + h] would also turn the
difference into a secant slope (a fifth of the relu networks would fail on that alone), so the
data keep every hidden pre-activation at least 0.1 (about 20 steps) away from a kink where f'
jumps (``kink_free``).

Claims tested (each per dtype, over every network run): backprop equals jax.grad, and forward
mode equals jax.grad, within the dtype's exact tolerance (max relative error per leaf); central
differences agree with jax.grad within the dtype's finite-difference tolerance (max error over the
gradient's largest entry).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import common  # noqa: E402

import fbackprop as fb  # noqa: E402
from fbackprop.autodiff import default_eps  # noqa: E402

ACTIVATIONS = sorted(fb.activations.ACTIVATIONS)
LOSSES = sorted(fb.losses.LOSSES)
DTYPES = ("float32", "float64")
#: Deeper networks mix these hidden activations, first `depth` of them.
MIXED = ("tanh", "gelu", "sigmoid", "elu", "swish")
DEPTHS = (1, 3, 5)
#: Central-difference step per dtype (see the module docstring).
FD_EPS = {"float64": 1e-6, "float32": default_eps(jnp.float32)}
#: Data keep hidden pre-activations this far from a kink (about 20 float32 steps; see ``kink_free``).
KINK_MARGIN = 0.1


def exact_tol(dtype: str) -> float:
    return fb.tolerance(dtype)


def fd_tol(dtype: str) -> float:
    return fb.tolerance(dtype, finite_differences=True)


class Row(NamedTuple):
    activations: tuple[str, ...]
    loss: str
    dtype: str
    sizes: tuple[int, ...]
    n_params: int
    vs_autodiff: float  # backprop vs jax.grad, max relative error
    forward_vs_autodiff: float  # forward mode vs jax.grad
    fd_vs_autodiff: float  # central differences vs jax.grad, relative to the whole gradient's largest entry
    fd_cosine: float  # smallest per-leaf cosine(central differences, jax.grad)
    fd_leaf_max_rel: float = float("nan")  # central differences vs jax.grad per leaf (reported, not judged)

    @property
    def exact_ok(self) -> bool:
        tol = exact_tol(self.dtype)
        return bool(self.vs_autodiff <= tol and self.forward_vs_autodiff <= tol)

    @property
    def fd_ok(self) -> bool:
        return bool(self.fd_vs_autodiff <= fd_tol(self.dtype))

    @property
    def ok(self) -> bool:
        return self.exact_ok and self.fd_ok


def cases() -> list[tuple[tuple[str, ...], str]]:
    """Every (hidden activations, loss) of the matrix, in a fixed order (the index seeds the draw):
    each activation twice (2 hidden layers) with each loss, then the mixed stacks of ``DEPTHS``."""
    pairs = [((a, a), loss) for a in ACTIVATIONS for loss in LOSSES]
    pairs += [(MIXED[:d], loss) for d in DEPTHS for loss in LOSSES]
    return pairs


def networks(quick: bool) -> list[tuple[int, tuple[str, ...], str, str]]:
    """``(case index, hidden activations, loss, dtype)`` to check.

    Full: every case in both dtypes. Quick (13 networks): each activation once, the k-th with loss
    k mod 3 and dtype k mod 2 (so every loss x dtype column is covered), and the mixed stacks of
    depth 1 (float64) and 3 (float32).
    """
    all_cases = cases()
    if not quick:
        return [(i, h, loss, dt) for dt in DTYPES for i, (h, loss) in enumerate(all_cases)]
    out = []
    for k, a in enumerate(ACTIVATIONS):
        loss, dt = LOSSES[k % len(LOSSES)], DTYPES[k % len(DTYPES)]
        out.append((all_cases.index(((a, a), loss)), (a, a), loss, dt))
    for k, d in enumerate(DEPTHS[:2]):
        loss, dt = LOSSES[(k + 1) % len(LOSSES)], DTYPES[(k + 1) % len(DTYPES)]
        out.append((all_cases.index((MIXED[:d], loss)), MIXED[:d], loss, dt))
    return out


def sizes_of(hidden, width: int = 5, n_in: int = 4, n_out: int = 3) -> tuple[int, ...]:
    return (n_in,) + (width,) * len(hidden) + (n_out,)


def df_kinks(name: str) -> tuple[float, ...]:
    """The points of ``fb.activations.KINKS[name]`` where f' itself jumps (relu, leaky_relu; not elu,
    whose f' is continuous and only f'' jumps): read off the library's f' on either side."""
    df = fb.activations.get(name).df
    return tuple(
        k
        for k in fb.activations.KINKS.get(name, ())
        if abs(float(df(np.float64(k + 1e-9))) - float(df(np.float64(k - 1e-9)))) > 1e-3
    )


def kink_free(hidden, params, x) -> np.ndarray:
    """Which rows of ``x`` keep every hidden pre-activation ``z^l`` at least ``KINK_MARGIN`` away
    from a point where its activation's f' jumps (``df_kinks``). A central difference whose
    [theta - h, theta + h] moves a ``z`` across such a kink is the slope of a secant, not a
    derivative, and disagrees with every exact method (at h = 4.9e-3, a fifth of the relu networks
    would), which says nothing about backprop."""
    kinks = [df_kinks(name) for name in hidden]
    ok = np.ones(len(x), bool)
    a = x
    for l, (name, theta) in enumerate(zip(hidden, params)):
        if not any(kinks[l:]):
            break
        z = a @ theta["W"].T + theta["b"]  # z^l = a^{l-1} W^T + b
        for kink in kinks[l]:
            ok &= np.all(np.abs(z - kink) >= KINK_MARGIN, axis=1)
        a = np.asarray(fb.activations.get(name).f(z))  # a^l = f(z^l)
    return ok


def draw(todo, seed: int, n: int = 8) -> dict[int, tuple]:
    """``{case index: (params, x, y)}`` in float64 (NumPy arrays), for the cases in ``todo``.

    Each case's draw depends only on ``seed`` and its index, so the float32 and float64 checks of a
    case (and a quick and a full run) see the same network and data; the float32 checks round them.
    ``W`` is Glorot-uniform (``net.init``'s default scale) and, unlike ``net.init``, ``b`` is
    nonzero (0.5 N(0, 1)), so the check exercises the bias path; ``x`` is 1.5 N(0, 1), keeping
    only rows that are ``kink_free`` (the first ``n`` of 16 n; too few, and the network is
    redrawn). Drawn with NumPy: compiling JAX's random number generator per architecture would
    cost more than the check.
    """
    out = {}
    for i, hidden, loss, _ in todo:
        if i in out:
            continue
        rng = np.random.default_rng([seed, i])
        sizes = sizes_of(hidden)
        x = np.zeros((0, sizes[0]))
        while len(x) < n:  # a unit whose z hugs a kink for every input gets its network redrawn
            params = []
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
                r = np.sqrt(6.0 / (fan_in + fan_out))
                params.append(
                    {"W": rng.uniform(-r, r, (fan_out, fan_in)), "b": 0.5 * rng.standard_normal(fan_out)}
                )
            pool = 1.5 * rng.standard_normal((16 * n, sizes[0]))
            x = pool[kink_free(hidden, params, pool)][:n]
        if loss == "cross_entropy":
            y = rng.integers(0, sizes[-1], n)
        elif loss == "binary_cross_entropy":
            y = (rng.random((n, sizes[-1])) < 0.5).astype(np.float64)
        else:
            y = rng.standard_normal((n, sizes[-1]))
        out[i] = (tuple(params), x, y)
    return out


def as_dtype(params, x, y, dtype: str):
    """Round the float64 draw to ``dtype`` (integer labels stay integers)."""
    cast = lambda a: (
        np.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else np.asarray(a)
    )
    return jax.tree.map(cast, params), cast(x), cast(y)


def gradients(net, loss: str, dtype: str):
    """``(params, x, y) -> [backprop, jax.grad, forward mode, central differences]``."""
    methods = (
        fb.backprop(net, loss),
        fb.autodiff(net, loss),
        fb.forward_mode(net, loss),
        fb.numerical_grad(net, loss, eps=FD_EPS[dtype]),
    )
    return lambda p, x, y: [m(p, x, y) for m in methods]


def flat(grads) -> np.ndarray:
    """All leaves of a gradient as one vector: ``fb.compare`` of two such vectors measures errors
    against the whole gradient's largest entry."""
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(grads)])


def _program(nets_and_losses, dtype: str):
    """One compiled program computing the four gradients of each network."""
    fns = [gradients(net, loss, dtype) for net, loss in nets_and_losses]
    return jax.jit(lambda data: [f(*d) for f, d in zip(fns, data)])


def run(quick: bool = False, seed: int = 0, groups: int = 1) -> list[Row]:
    """Check every network of ``networks(quick)``.

    The networks of one dtype are compiled together, as ``groups`` programs: one program a network
    would spend most of the time on each program's fixed compile cost (measured: one program a dtype
    takes 0.6x the CPU time of one a network, and 0.75x that of three). The programs compile in
    parallel threads (XLA compiles without holding the GIL), one per CPU core.
    """
    todo = networks(quick)
    drawn = draw(todo, seed)
    jobs = []
    for dtype in DTYPES:
        mine = [(j, i, h, loss) for j, (i, h, loss, dt) in enumerate(todo) if dt == dtype]
        jobs += [(dtype, mine[g::groups]) for g in range(groups) if mine[g::groups]]

    def compile_and_run(job):
        dtype, mine = job
        nets = [(fb.mlp(sizes_of(h), activation=list(h)), loss) for _, _, h, loss in mine]
        data = [as_dtype(*drawn[i], dtype) for _, i, _, _ in mine]
        program = _program(nets, dtype).lower(data).compile()
        return [(j, net, *jax.device_get(out)) for (j, *_), (net, _), out in zip(mine, nets, program(data))]

    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        results = [r for job_results in pool.map(compile_and_run, jobs) for r in job_results]
    rows: dict[int, Row] = {}
    for j, net, manual, reverse, forward, numerical in results:
        hidden, loss, dtype = todo[j][1:]
        fd = fb.compare(numerical, reverse)
        rows[j] = Row(
            tuple(hidden),
            loss,
            dtype,
            net.sizes,
            net.n_params,
            fb.compare(manual, reverse).max_rel,
            fb.compare(forward, reverse).max_rel,
            fb.compare(flat(numerical), flat(reverse)).max_rel,
            fd.min_cosine,
            fd.max_rel,
        )
    return [rows[j] for j in range(len(todo))]


def table(rows: list[Row]) -> str:
    """A Markdown table, one network per row (errors: max relative error against jax.grad)."""
    head = (
        "hidden activations",
        "loss",
        "dtype",
        "sizes",
        "P",
        "backprop vs jax.grad",
        "forward vs jax.grad",
        "finite diff vs jax.grad (whole gradient)",
        "finite diff cosine (min over leaves)",
        "",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (
            ",".join(r.activations),
            r.loss,
            r.dtype,
            "-".join(map(str, r.sizes)),
            str(r.n_params),
            f"{r.vs_autodiff:.1e}",
            f"{r.forward_vs_autodiff:.1e}",
            f"{r.fd_vs_autodiff:.1e}",
            f"1 - {max(1 - r.fd_cosine, 0):.0e}",
            "ok" if r.ok else "FAIL",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims(rows: list[Row]) -> dict[str, bool]:
    """One claim per dtype and kind of check, over that dtype's networks."""
    out = {}
    for dtype in DTYPES:
        mine = [r for r in rows if r.dtype == dtype]
        if not mine:
            continue
        n, tol = len(mine), exact_tol(dtype)
        out[
            f"{dtype}: backprop equals jax.grad within {tol:.0e} (max relative error) on all {n} networks"
        ] = all(r.vs_autodiff <= tol for r in mine)
        out[f"{dtype}: forward mode equals jax.grad within {tol:.0e} on all {n} networks"] = all(
            r.forward_vs_autodiff <= tol for r in mine
        )
        out[
            f"{dtype}: central differences (h = {FD_EPS[dtype]:.1e}) agree with jax.grad within "
            f"{fd_tol(dtype):.0e} of the gradient's largest entry on all {n} networks"
        ] = all(r.fd_ok for r in mine)
    return out


def worst(rows: list[Row]) -> dict:
    """The largest errors per dtype."""
    out = {}
    for dtype in DTYPES:
        mine = [r for r in rows if r.dtype == dtype]
        if mine:
            out[dtype] = {
                "networks": len(mine),
                "backprop_vs_autodiff": max(r.vs_autodiff for r in mine),
                "forward_vs_autodiff": max(r.forward_vs_autodiff for r in mine),
                "fd_vs_autodiff": max(r.fd_vs_autodiff for r in mine),
                "fd_min_cosine": min(r.fd_cosine for r in mine),
            }
    return out


def summary(rows: list[Row]) -> dict:
    """One verdict over all networks, for the demo: ``claim``, ``held``, ``networks``, ``worst``."""
    c = claims(rows)
    tols = ", ".join(f"{dt} {exact_tol(dt):.0e}" for dt in DTYPES)
    return {
        "claim": f"backprop equals jax.grad and forward mode (max relative error within {tols}) and "
        f"central differences agree with them, on every network in float32 and float64",
        "held": all(c.values()),
        "networks": len(rows),
        "claims": c,
        "worst": worst(rows),
    }


SHORT = {"binary_cross_entropy": "binary CE", "cross_entropy": "cross-ent.", "squared_error": "sq. error"}


def _label(hidden: tuple[str, ...]) -> str:
    if len(hidden) == 2 and hidden[0] == hidden[1]:
        return hidden[0]
    return f"depth {len(hidden)}: " + "-".join(hidden)


def grid(rows: list[Row], field: str) -> tuple[list[str], list[tuple[str, str]], np.ndarray]:
    """``(row labels, columns (dtype, loss), errors)``: ``errors[i, j]`` is ``field`` of the network
    ``labels[i]`` with loss and dtype ``columns[j]``, NaN where it was not run."""
    labels = list(dict.fromkeys(_label(h) for h, _ in cases()))
    columns = [(dt, loss) for dt in DTYPES for loss in LOSSES]
    errors = np.full((len(labels), len(columns)), np.nan)
    for r in rows:
        errors[labels.index(_label(r.activations)), columns.index((r.dtype, r.loss))] = getattr(r, field)
    return labels, columns, errors


def figure(rows: list[Row]):
    """Heat maps of log10(max relative error against jax.grad), one panel per method: rows = hidden
    activations (two hidden layers; the mixed deeper stacks last), columns = dtype x loss. Cells over
    their tolerance are outlined in red; grey cells were not run (``--quick`` runs a subset)."""
    import matplotlib.pyplot as plt

    panels = (
        ("hand-written backprop", "vs_autodiff", exact_tol),
        ("forward mode (jax.jvp per parameter)", "forward_vs_autodiff", exact_tol),
        ("central differences (whole-gradient scale)", "fd_vs_autodiff", fd_tol),
    )
    fig, axes = plt.subplots(1, 3, figsize=(16, 7.5), sharey=True)
    floor = -17.0
    for ax, (title, field, tol) in zip(axes, panels):
        labels, columns, errors = grid(rows, field)
        with np.errstate(divide="ignore"):
            logs = np.maximum(np.log10(errors), floor)
        ax.set_facecolor("0.92")
        im = ax.imshow(logs, cmap="viridis", vmin=floor, vmax=0, aspect="auto")
        for i, j in zip(*np.nonzero(np.isfinite(logs))):
            v, dt = logs[i, j], columns[j][0]
            ax.text(
                j,
                i,
                "0" if errors[i, j] == 0 else f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v < -8 else "black",
            )
            if errors[i, j] > tol(dt):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
        ax.axvline(len(LOSSES) - 0.5, color="white", lw=3)
        ax.set_xticks(
            range(len(columns)), [SHORT[loss] for _, loss in columns], fontsize=8, rotation=30, ha="right"
        )
        for k, dt in enumerate(DTYPES):
            ax.text(
                (k + 0.5) * len(LOSSES) - 0.5,
                -0.7,
                f"{dt} (tol. {tol(dt):.0e})",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"{title} vs jax.grad", fontsize=10, pad=22)
        ax.set_xlabel("loss")
    axes[0].set_ylabel("hidden activations (two hidden layers of 5 units; last rows: mixed stacks)")
    fig.colorbar(
        im,
        ax=axes,
        fraction=0.02,
        pad=0.01,
        label="log10 max relative error against jax.grad (same dtype); '0': identical",
    )
    fig.suptitle(
        "Gradient check against jax.grad, per network (red outline: over the dtype's tolerance; "
        "grey: not run)",
        fontsize=11,
    )
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "gradcheck")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.quick, args.seed)
    metrics = {
        "networks": len(rows),
        "worst": worst(rows),
        "fd_eps": FD_EPS,
        "tolerances": {dt: {"exact": exact_tol(dt), "finite_differences": fd_tol(dt)} for dt in DTYPES},
        "rows": [r._asdict() for r in rows],
    }
    return common.finish("gradcheck", args, t0, metrics, claims(rows), {"heatmap": figure(rows)}, table(rows))


if __name__ == "__main__":
    main()
