"""Curvature products against one gradient, and the exact Hessian diagonal by second-order
backprop against the dense Hessian and against P Hessian-vector products. Variants run side by
side in one process, in interleaved rounds; the tables give median times and the median of
per-round ratios.

    python benchmarks/bench_curvature.py [--quick] [--gpu] [--rounds 21] [--diag-dtype float32]
                                         [--out runs/bench_curvature]

Products: the medium MLP [784, 512, 512, 10] (tanh, cross-entropy on logits, integer labels,
batch 256, float32; ``--gpu``: [4096]*4 + [1000], batch 4096). One gradient (``jax.grad``, the
denominator; ``fb.value_and_backprop``; ``fb.autodiff``), ``fb.hvp`` by forward-over-reverse
(``"autodiff"``) and by the R-operator (``"backprop"``), and ``fb.ggn_vp``. Each is timed twice:
"core", the compiled computation alone (the public function called inside ``jax.jit``, where its
shape checks cost nothing, on targets already one-hot), and "public", the function as a user
calls it (checks in Python, then the compiled core, on integer labels). The ratios over
``jax.grad`` use the core times. Targets (curvature issue): hvp/grad <= 1.7 and ggn_vp/grad <=
1.35 on CPU; <= 2.0 and <= 1.5 on GPU.

Diagonal: ``fb.hessian_diag`` (exact, second-order backprop) against (a) ``jnp.diag`` of the dense
``fb.hessian`` (``jax.hessian``: all P Hessian-vector products in one ``vmap``) and (b) P
Hessian-vector products ``fb.hvp(..., "autodiff")`` along the unit vectors (``jax.lax.map`` over
the basis, ``--chunk`` per ``vmap``), each keeping its own diagonal entry; at P ~ 1e3 and P ~ 1e4.
Where (a) or (b) would take more than ``--max-whole`` seconds per call, its time is extrapolated
from the first rows of the basis (marked "est."), and the diagonals are compared on those rows.
Target: hessian_diag >= 100x faster than (b) at P ~ 1e4. This part runs under
``jax.default_matmul_precision("highest")``, so that on GPUs float32 matmuls are not TF32 and
the diagonals can agree to 1e-5 (float32) or 1e-10 (``--diag-dtype float64``); no effect on CPU.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from timing import block, timed_rounds

import fbackprop as fb

PRODUCTS = {
    "cpu": ([784, 512, 512, 10], 256),
    "gpu": ([4096] * 4 + [1000], 4096),
    "quick": ([32, 64, 64, 10], 64),
}
DIAG_SIZES = {"P~1e3": ([32, 24, 8], 256), "P~1e4": ([64, 96, 48, 10], 256)}
DIAG_QUICK = {"P~1e2": ([8, 6, 3], 32), "P~4e2": ([12, 16, 8, 4], 32)}
TARGETS = {"cpu": {"hvp": 1.7, "ggn_vp": 1.35}, "gpu": {"hvp": 2.0, "ggn_vp": 1.5}}
AGREE_TOL = {"float32": 1e-5, "float64": 1e-10}
LOSS = "cross_entropy"


def first_calls(fns: dict) -> dict[str, float]:
    """Seconds of each function's first call (tracing and compilation included)."""
    out = {}
    for name, f in fns.items():
        t0 = time.perf_counter()
        block(f())
        out[name] = time.perf_counter() - t0
    return out


def problem(sizes, batch, dtype, seed=0):
    """Network, params, x, integer labels, the one-hot targets the compiled cores take, and a tangent v.
    (Data from NumPy: no small eager programs to compile.)"""
    net = fb.mlp(sizes, activation="tanh")
    params = net.init(jax.random.key(seed), dtype)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, sizes[0])), dtype)
    labels_np = rng.integers(0, sizes[-1], batch)
    labels, y = jnp.asarray(labels_np, jnp.int32), jnp.asarray(np.eye(sizes[-1])[labels_np], dtype)
    v = jax.tree.map(lambda w: jnp.asarray(rng.standard_normal(w.shape), dtype), params)
    return net, params, x, labels, y, v


def max_rel(a, b) -> float:
    """``max |a - b| / max(max |a|, max |b|)`` (fb.compare's definition), of flat arrays, in NumPy."""
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))


# --- 1. products against one gradient -------------------------------------------------------


def compile_core(fn, *args) -> tuple:
    """``jit(fn)`` compiled ahead for ``args`` (so its first call is not timed), with XLA's count of
    its floating-point operations (after optimisation, so dead and duplicated work is not counted)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    try:
        cost = compiled.cost_analysis()
        flops = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    except Exception:  # noqa: BLE001 -- a backend without cost analysis: no FLOP column
        flops = None
    return (lambda: compiled(*args)), seconds, flops


def bench_products(sizes, batch, dtype, rounds: int, reps: int) -> dict:
    net, params, x, labels, y, v = problem(sizes, batch, dtype)
    cost = lambda p, x, y: fb.losses.get(LOSS)(net.apply(p, x), y)
    public = {
        "value_and_backprop": (fb.value_and_backprop(net, LOSS), False),
        "autodiff": (fb.autodiff(net, LOSS), False),
        "hvp autodiff": (fb.hvp(net, LOSS, method="autodiff"), True),
        "hvp backprop": (fb.hvp(net, LOSS, method="backprop"), True),
        "ggn_vp": (fb.ggn_vp(net, LOSS), True),
    }
    fns, compile_s, flops = {}, {}, {}
    fns["jax.grad"], compile_s["jax.grad"], flops["jax.grad"] = compile_core(jax.grad(cost), params, x, y)
    for name, (f, takes_v) in public.items():
        # core: the public function traced inside jit (its checks run once, at trace time), one-hot y
        extra = (v,) if takes_v else ()
        core = functools.partial(lambda f, *args: f(*args), f)
        fns[name], compile_s[name], flops[name] = compile_core(core, params, x, y, *extra)
        # public: as a user calls it, checks in Python on integer labels, then its own compiled core
        fns[name + " (public)"] = functools.partial(f, params, x, labels, *extra)
        compile_s[name + " (public)"] = first_calls({name: fns[name + " (public)"]})[name]
    times = timed_rounds(fns, rounds, reps)
    Hv_ad, Hv_bp = (
        np.concatenate([np.ravel(w) for w in jax.tree.leaves(fns[k]())])
        for k in ("hvp autodiff", "hvp backprop")
    )
    rows = []
    for name in fns:
        if name.endswith("(public)"):
            continue
        ratios = [t / g for t, g in zip(times[name], times["jax.grad"])]
        row = {
            "name": name,
            "core_s": statistics.median(times[name]),
            "ratio_over_grad": statistics.median(ratios),
            "ratio_spread": [min(ratios), max(ratios)],
            "flops": flops[name],
            "flop_ratio_over_grad": flops[name] / flops["jax.grad"]
            if flops[name] and flops["jax.grad"]
            else None,
            "first_call_s": compile_s[name],
        }
        if name != "jax.grad":
            pub = times[name + " (public)"]
            row["public_s"] = statistics.median(pub)
            row["check_overhead_s"] = statistics.median([p - c for p, c in zip(pub, times[name])])
            row["public_ratio_over_grad"] = statistics.median([p / g for p, g in zip(pub, times["jax.grad"])])
            row["public_first_call_s"] = compile_s[name + " (public)"]
        rows.append(row)
    by = {r["name"]: r for r in rows}
    ratios = {
        "hvp_autodiff_over_grad": by["hvp autodiff"]["ratio_over_grad"],
        "hvp_backprop_over_grad": by["hvp backprop"]["ratio_over_grad"],
        "ggn_vp_over_grad": by["ggn_vp"]["ratio_over_grad"],
        "value_and_backprop_over_grad": by["value_and_backprop"]["ratio_over_grad"],
        "autodiff_over_grad": by["autodiff"]["ratio_over_grad"],
    }
    return {
        "sizes": sizes,
        "batch": batch,
        "dtype": jnp.dtype(dtype).name,
        "P": net.n_params,
        "grad_s": by["jax.grad"]["core_s"],
        "rows": rows,
        "ratios": ratios,
        "hvp_methods_max_rel": max_rel(Hv_ad, Hv_bp),
    }


# --- 2. the exact diagonal against the dense Hessian and P HVPs ------------------------------


def diagonal_methods(net, params, x, y, chunk: int):
    """The three ways to ``diag(H)``, compiled: ``(params, x, y) -> (P,)`` for hessian_diag, and
    ``(params, x, y, rows) -> (len(rows),)`` for the dense Hessian (its rows ``rows``, one vmap, as
    ``jax.hessian`` builds them) and for the unit-vector HVPs (``lax.map``, ``chunk`` per vmap)."""
    theta, unflatten = fb.flatten(params)
    P, dtype = theta.size, theta.dtype
    hessian_diag = jax.jit(lambda p, x, y: fb.flatten(fb.hessian_diag(net, LOSS)(p, x, y))[0])
    dense_whole = jax.jit(lambda p, x, y: jnp.diag(fb.hessian(net, LOSS)(p, x, y)))
    grad = jax.grad(lambda t, x, y: fb.losses.get(LOSS)(net.apply(unflatten(t), x), y))

    def dense_rows(p, x, y, rows):  # rows of jax.hessian = jacfwd(jacrev): vmap of jvp(grad)
        t = fb.flatten(p)[0]
        E = jax.nn.one_hot(rows, P, dtype=dtype)
        H_rows = jax.vmap(lambda e: jax.jvp(lambda t: grad(t, x, y), (t,), (e,))[1])(E)
        return H_rows[jnp.arange(rows.size), rows]

    hvp = fb.hvp(net, LOSS, "autodiff")

    def unit_hvps(p, x, y, rows):  # e_i^T H e_i, one HVP per unit vector
        def entry(i):
            return fb.flatten(hvp(p, x, y, unflatten(jax.nn.one_hot(i, P, dtype=dtype))))[0][i]

        return jax.lax.map(entry, rows, batch_size=min(chunk, rows.size))

    return hessian_diag, dense_whole, jax.jit(dense_rows), jax.jit(unit_hvps)


def bench_diagonal(name, sizes, batch, dtype, rounds: int, reps: int, chunk: int, max_whole_s: float) -> dict:
    net, params, x, _, y, _ = problem(sizes, batch, dtype)
    P = net.n_params
    hessian_diag, dense_whole, dense_rows, unit_hvps = diagonal_methods(net, params, x, y, chunk)
    fns = {
        "hessian_diag": lambda: hessian_diag(params, x, y),
        "dense": lambda: dense_whole(params, x, y),
        "hvps": (lambda rows: lambda: unit_hvps(params, x, y, rows))(jnp.asarray(np.arange(P))),
    }
    whole, compile_s, scale = {"dense": True, "hvps": True}, {}, 1.0
    if P > 4 * chunk:  # time the first rows of the basis; the whole basis only if it fits in max_whole_s
        probe = jnp.asarray(np.arange(2 * chunk))
        parts = {
            "dense": lambda: dense_rows(params, x, y, probe),
            "hvps": lambda: unit_hvps(params, x, y, probe),
        }
        compile_s.update({k + " part": t for k, t in first_calls(parts).items()})
        scale = P / probe.size
        for k, t in timed_rounds(parts, 2, 1).items():
            if statistics.median(t) * scale > max_whole_s:
                whole[k], fns[k] = False, parts[k]
    compile_s.update(first_calls({k: f for k, f in fns.items() if whole.get(k, True)}))
    times = timed_rounds(fns, rounds, {"hessian_diag": reps, "dense": 1, "hvps": 1})
    d = np.asarray(fns["hessian_diag"]())
    row = {
        "size": name,
        "sizes": sizes,
        "batch": batch,
        "dtype": jnp.dtype(dtype).name,
        "P": P,
        "chunk": chunk,
        "hessian_diag_s": statistics.median(times["hessian_diag"]),
        "tolerance": AGREE_TOL[jnp.dtype(dtype).name],
        "first_call_s": compile_s,
    }
    for k in ("dense", "hvps"):
        if not whole[k]:  # extrapolate the part to the whole basis
            times[k] = [t * scale for t in times[k]]
        other = np.asarray(fns[k]())
        row.update(
            {
                f"{k}_s": statistics.median(times[k]),
                f"{k}_estimated": not whole[k],
                f"speedup_over_{k}": statistics.median(
                    [t / s for t, s in zip(times[k], times["hessian_diag"])]
                ),
                f"max_rel_vs_{k}": max_rel(d[: other.size], other),
                f"entries_compared_{k}": other.size,
            }
        )
    row["agree"] = max(row["max_rel_vs_dense"], row["max_rel_vs_hvps"]) <= row["tolerance"]
    return row


# --- report -----------------------------------------------------------------------------------


def products_table(prod: dict, targets: dict) -> str:
    head = (
        f"{'':20s} {'core ms':>9s} {'/ grad':>7s} {'spread':>11s} {'FLOPs/grad':>10s} "
        f"{'public ms':>10s} {'checks ms':>10s} {'target':>8s}"
    )
    lines = [
        f"products: MLP {prod['sizes']} tanh, cross-entropy, batch {prod['batch']}, {prod['dtype']}, P = "
        f"{prod['P']:,d}",
        head,
        "-" * len(head),
    ]
    for r in prod["rows"]:
        kind = "ggn_vp" if r["name"] == "ggn_vp" else "hvp" if r["name"].startswith("hvp") else None
        target = f"<= {targets[kind]}" if kind else ""
        pub = (
            f"{1e3 * r['public_s']:>10.3f} {1e3 * r['check_overhead_s']:>10.3f}"
            if "public_s" in r
            else f"{'':>10s} {'':>10s}"
        )
        fl = f"{r['flop_ratio_over_grad']:.3f}" if r["flop_ratio_over_grad"] else "-"
        lines.append(
            f"{r['name']:20s} {1e3 * r['core_s']:>9.3f} {r['ratio_over_grad']:>7.3f} "
            f"{r['ratio_spread'][0]:>5.2f}-{r['ratio_spread'][1]:<5.2f} {fl:>10s} {pub} {target:>8s}"
        )
    lines.append(
        f"FLOPs/grad: XLA's operation count of each compiled program over jax.grad's; a time ratio below it "
        f"needs more FLOP/s than the gradient gets.\nhvp autodiff vs backprop: max rel "
        f"{prod['hvp_methods_max_rel']:.1e}"
    )
    return "\n".join(lines)


def diagonal_table(rows: list) -> str:
    head = (
        f"{'size':7s} {'sizes':18s} {'dtype':8s} {'P':>7s} {'diag ms':>9s} {'dense s':>12s} {'hvps s':>12s} "
        f"{'x dense':>9s} {'x hvps':>9s} {'rel dense':>9s} {'rel hvps':>9s} {'agree':>6s}"
    )
    lines = [
        "diagonal: fb.hessian_diag vs (a) diag of the dense fb.hessian vs (b) P unit-vector fb.hvp",
        head,
        "-" * len(head),
    ]
    for r in rows:
        dense = f"{r['dense_s']:.3g}{' est.' if r['dense_estimated'] else ''}"
        hvps = f"{r['hvps_s']:.3g}{' est.' if r['hvps_estimated'] else ''}"
        lines.append(
            f"{r['size']:7s} {str(r['sizes']):18s} {r['dtype']:8s} {r['P']:>7,d} "
            f"{1e3 * r['hessian_diag_s']:>9.3f} "
            f"{dense:>12s} {hvps:>12s} {r['speedup_over_dense']:>9.0f} {r['speedup_over_hvps']:>9.0f} "
            f"{r['max_rel_vs_dense']:>9.1e} {r['max_rel_vs_hvps']:>9.1e} {'yes' if r['agree'] else 'NO':>6s}"
        )
        for k, what in (("dense", "(a)"), ("hvps", "(b)")):
            if r[f"entries_compared_{k}"] < r["P"]:
                lines.append(
                    f"        {what} est. from its first {r[f'entries_compared_{k}']} rows; diagonals "
                    "compared on those"
                )
    return "\n".join(lines)


def summary(prod: dict, diag: list, targets: dict, platform: str) -> tuple[dict, str]:
    r = prod["ratios"]
    met = {
        f"hvp autodiff / grad <= {targets['hvp']}": r["hvp_autodiff_over_grad"] <= targets["hvp"],
        f"hvp backprop / grad <= {targets['hvp']}": r["hvp_backprop_over_grad"] <= targets["hvp"],
        f"ggn_vp / grad <= {targets['ggn_vp']}": r["ggn_vp_over_grad"] <= targets["ggn_vp"],
    }
    big = max(diag, key=lambda row: row["P"])
    met[f"hessian_diag >= 100x faster than P HVPs at P = {big['P']:,d}"] = big["speedup_over_hvps"] >= 100
    met[f"the three diagonals agree (rel <= {diag[0]['tolerance']:g})"] = all(row["agree"] for row in diag)
    lines = [f"targets ({platform}):"] + [f"  {'met    ' if ok else 'NOT met'}  {k}" for k, ok in met.items()]
    return met, "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, few rounds (a smoke run)")
    p.add_argument("--gpu", action="store_true", help="products on [4096]*4+[1000], batch 4096 (GPU targets)")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--diag-rounds", type=int, default=3, help="rounds for the diagonal comparison")
    p.add_argument("--diag-dtype", choices=("float32", "float64"), default="float32")
    p.add_argument(
        "--chunk", type=int, default=64, help="unit vectors per vmap in (b), and rows per part for est."
    )
    p.add_argument(
        "--max-whole",
        type=float,
        default=None,
        help="seconds per call above which (a)/(b) are estimated (default 10; --quick: 0, to exercise it)",
    )
    p.add_argument("--out", default="runs/bench_curvature")
    args = p.parse_args(argv)
    if args.diag_dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    platform = "gpu" if args.gpu else "cpu"
    sizes, batch = PRODUCTS["quick" if args.quick else platform]
    rounds = 3 if args.quick else args.rounds
    max_whole = args.max_whole if args.max_whole is not None else 0.0 if args.quick else 10.0
    reps = 3 if args.quick else 5 if args.gpu else 3
    prod = bench_products(sizes, batch, jnp.float32, rounds, reps)
    targets = TARGETS[platform]
    print(products_table(prod, targets) + "\n", flush=True)
    diag = []
    for name, (dsizes, dbatch) in (DIAG_QUICK if args.quick else DIAG_SIZES).items():
        with jax.default_matmul_precision("highest"):  # full-precision float32 matmuls on GPUs (not TF32)
            diag.append(
                bench_diagonal(
                    name,
                    dsizes,
                    dbatch,
                    jnp.dtype(args.diag_dtype),
                    2 if args.quick else args.diag_rounds,
                    10,
                    32 if args.quick else args.chunk,
                    max_whole,
                )
            )
        print("\n".join(diagonal_table(diag[-1:]).splitlines()[3:]), flush=True)
    met, lines = summary(prod, diag, targets, platform)
    text = "\n\n".join([products_table(prod, targets), diagonal_table(diag), lines])
    print("\n" + text)
    fb.results.write_json(
        os.path.join(args.out, "results.json"),
        {
            "config": vars(args),
            "versions": fb.results.versions(),
            "products": prod,
            "diagonal": diag,
            "targets": met,
        },
    )
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")
    return {"products": prod, "diagonal": diag, "targets": met}


if __name__ == "__main__":
    main()
