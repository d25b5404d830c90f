"""Gradient check: the hand-written backward pass against reverse mode, forward mode and finite
differences, for a matrix of networks (every activation x every loss, several depths), float64.

    python experiments/gradcheck.py [--quick] [--seed 0] [--out runs/gradcheck]

Claim tested: for every network in the matrix, backprop equals jax.grad and forward mode to
1e-10 relative, and central differences to 1e-6 (their truncation error), in float64.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import NamedTuple

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import fbackprop as fb  # noqa: E402

EXACT_TOL, FD_TOL = fb.tolerance("float64"), fb.tolerance("float64", finite_differences=True)
ACTIVATIONS = sorted(fb.activations.ACTIVATIONS)
LOSSES = sorted(fb.losses.LOSSES)


class Row(NamedTuple):
    activations: tuple[str, ...]
    loss: str
    sizes: tuple[int, ...]
    n_params: int
    vs_autodiff: float
    forward_vs_autodiff: float
    fd_vs_autodiff: float

    @property
    def ok(self) -> bool:
        return self.vs_autodiff <= EXACT_TOL and self.forward_vs_autodiff <= EXACT_TOL and self.fd_vs_autodiff <= FD_TOL


def networks(quick: bool) -> list[tuple[tuple[str, ...], str]]:
    """(hidden activations, loss) pairs: every activation with every loss at depth 2, then depths 1-5
    with mixed activations. ``quick`` pairs each activation with one loss and keeps fewer depths."""
    pairs = [((a, a), loss) for i, a in enumerate(ACTIVATIONS) for j, loss in enumerate(LOSSES)
             if not quick or i % len(LOSSES) == j]
    mixed = ["tanh", "gelu", "sigmoid", "elu", "swish"]
    for depth in ((1, 3) if quick else (1, 3, 5)):
        pairs += [(tuple(mixed[:depth]), loss) for loss in (LOSSES[:1] if quick else LOSSES)]
    return pairs


def check(hidden: tuple[str, ...], loss: str, seed: int, n: int = 8, width: int = 5, n_in: int = 4, n_out: int = 3) -> Row:
    sizes = (n_in,) + (width,) * len(hidden) + (n_out,)
    net = fb.mlp(sizes, activation=list(hidden))
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    params = net.init(kp)
    x = 1.5 * jax.random.normal(kx, (n, n_in))
    if loss == "cross_entropy":
        y = jax.random.randint(ky, (n,), 0, n_out)
    elif loss == "binary_cross_entropy":
        y = jax.random.bernoulli(ky, 0.5, (n, n_out)).astype(x.dtype)
    else:
        y = jax.random.normal(ky, (n, n_out))
    methods = [m(net, loss) for m in (fb.backprop, fb.autodiff, fb.forward_mode, fb.numerical_grad)]
    manual, reverse, forward, numerical = jax.jit(lambda p, x, y: [m(p, x, y) for m in methods])(params, x, y)
    rel = lambda g: fb.compare(g, reverse).max_rel
    return Row(hidden, loss, sizes, net.n_params, rel(manual), rel(forward), rel(numerical))


def run(quick: bool = False, seed: int = 0) -> list[Row]:
    return [check(hidden, loss, seed + i) for i, (hidden, loss) in enumerate(networks(quick))]


def table(rows: list[Row]) -> str:
    """A Markdown table, one network per row."""
    head = ("hidden activations", "loss", "sizes", "P", "backprop vs jax.grad", "forward vs jax.grad", "finite diff vs jax.grad", "")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (",".join(r.activations), r.loss, "-".join(map(str, r.sizes)), str(r.n_params),
                 f"{r.vs_autodiff:.1e}", f"{r.forward_vs_autodiff:.1e}", f"{r.fd_vs_autodiff:.1e}", "ok" if r.ok else "FAIL")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> dict:
    return {
        "claim": f"backprop equals jax.grad and forward mode within {EXACT_TOL:.0e} and central differences "
                 f"within {FD_TOL:.0e} (max relative error, float64) on every network",
        "held": all(r.ok for r in rows),
        "networks": len(rows),
        "worst": {"backprop_vs_autodiff": max(r.vs_autodiff for r in rows),
                  "forward_vs_autodiff": max(r.forward_vs_autodiff for r in rows),
                  "fd_vs_autodiff": max(r.fd_vs_autodiff for r in rows)},
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer networks (the test suite's setting)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/gradcheck")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.quick, args.seed)
    result = {"config": vars(args), "versions": fb.results.versions(), **summary(rows),
              "rows": [r._asdict() for r in rows], "seconds": time.perf_counter() - t0}
    print(table(rows))
    print(f"\n{result['claim']}: {'HELD' if result['held'] else 'FAILED'} ({len(rows)} networks)")
    fb.results.write_json(os.path.join(args.out, "results.json"), result)
    fb.results.write_text(os.path.join(args.out, "table.md"), table(rows) + "\n")
    return result


if __name__ == "__main__":
    main()
