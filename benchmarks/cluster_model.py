"""The cost of one step at cluster scale, modelled: each Levenberg-Marquardt solver's iteration, a
training step and a Hessian-vector product on ``p`` accelerators of the H100 class, data parallel
(each device holds ``N / p`` rows), from flop counts, all-reduce volumes and stated rates. Pure
arithmetic (no JAX): it prints the tables of docs/scale.md as markdown.

    python benchmarks/cluster_model.py            # the page's generated sections, as markdown
    python benchmarks/cluster_model.py --write docs/scale.md   # refresh them in the page
    python benchmarks/cluster_model.py --check docs/scale.md   # exit 1 if the page has drifted

The page holds each generated section between ``<!-- cluster_model: begin NAME -->`` and
``<!-- cluster_model: end NAME -->``; ``fill`` replaces what is between them, so the prose around
the tables is written by hand and the figures never are.

The model (float64; ``r = N n_out / p`` residual rows per device, ``n = N / p`` examples per device):

- dense / accumulate: ``J`` of the local rows ``(2 + 4 n_out) n P`` flops (one forward pass and a
  backward pass per output), ``G = J^T J`` ``2 r P^2``, all-reduce ``G`` and ``g`` (``P^2 + P``
  floats), Cholesky ``P^3 / 3`` on every device (replicated), the triangular solves ``2 P^2``, the
  trial's forward pass ``2 n P``. Memory: ``G`` and its factor, ``2 P^2``, ``J`` (dense: all
  ``r P``; accumulate: one chunk of 1024 rows) and three ``P``-vectors (params, gradient, step).
- cg: the gradient ``6 n P`` and its all-reduce (``P``), then per CG iteration one ``G v = J^T (J v)``
  (``J v`` by the R-operator, 4 flops per parameter and row: ``dW a + W da``; ``J^T u`` by a
  backward pass, 4 more: ``8 n P``) and its all-reduce (``P`` floats). Memory: six ``P``-vectors.
- dual (fbackprop's, for a ``Network`` with ``D = I``): ``K = J J^T`` is ``(N n_out)``-square, and
  its entry for rows ``i, j`` is ``sum_l (delta^l_i . delta^l_j)(a^{l-1}_i . a^{l-1}_j + 1)``
  (``fb.jacobian_gram``): it needs every device's deltas and layer inputs, ``sum_l (N n_out s_l +
  N s_{l-1})`` floats, all-gathered; each device forms its ``r`` rows of ``K`` (``2 r (N n_out)
  sum_l (s_{l-1} + s_l + 1)`` flops) after the gradient's passes and one backward pass per output
  (``(6 + 2 n_out) n P``); the rows of ``K`` are all-gathered (``(N n_out)^2`` floats), ``K + mu I``
  is factorised on every device (``(N n_out)^3 / 3``), and ``delta = J^T w`` is one backward pass
  over the local rows (``4 n P``), all-reduced with the gradient (``2 P`` floats). Memory: ``K``
  and its factor, the gathered deltas and inputs, and three ``P``-vectors.
- dual, J Jᵀ (Marquardt scaling's ``D``, or a model that is not a ``Network``): ``J`` is formed
  (``(2 + 4 n_out) n P``) and all-gathered (``N n_out P`` floats, a ring that passes each device's
  block on), each device forms its rows of ``K`` (``2 r (N n_out) P``); then as above. Memory:
  ``K``, its factor, the local ``J``, one block received and three ``P``-vectors.
- training step: one gradient (``6 n P``) and its all-reduce; the optimizer's update (``~10 P``).
- HVP (forward-over-reverse: the forward and backward passes and their tangents): ``14 n P``, and
  an all-reduce of ``P``.

The per-row coefficients (forward ``2 P``, gradient ``6 P``, ``G v`` ``8 P`` past a cached forward
pass, HVP ``14 P``) agree with XLA's own count (``cost_analysis``) of fbackprop's programs on the
assumed network to within 15% (``tests/test_cluster_model.py``).
- The network assumed: 16 inputs, two tanh layers of width ``h`` and ``n_out`` outputs, with ``h``
  the width that gives ``P`` parameters (``P = h^2 + 19 h + 1``, as in ``bench_lm.py --gpu``);
  every pass keeps the activations of its ``n`` examples, ``4 n (2 h + n_out)`` floats (values
  and tangents or deltas).

Time = compute + communication (no overlap). Compute: flops over the peak times an efficiency.
An all-reduce of ``S`` bytes takes ``2 (p - 1) / p * S / B + L`` (a ring: Patarasuk & Yuan 2009),
an all-gather ``(p - 1) / p * S / B + L``, with ``B`` NCCL's bus bandwidth and ``L`` a latency per
collective.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import NamedTuple

FLOAT_BYTES = 8  # float64
MEMORY_BYTES = 80e9  # H100 SXM, 80 GB of HBM3
PEAK_FLOPS = 67e12  # H100 SXM, FP64 through the tensor cores (the FP32 non-tensor peak is the same)
GEMM_EFFICIENCY = 0.7  # G = J^T J, K = J J^T: large matmuls
CHOLESKY_EFFICIENCY = 0.3  # a dense Cholesky factorisation (potrf) on one device
PASS_EFFICIENCY = 0.3  # forward / backward / R-operator passes: matmuls only sqrt(P) wide
CHUNK_ROWS = 1024  # accumulate's rows per chunk (fb.levenberg_marquardt's chunk_size default)
CG_ITERS = 100  # CG iterations per LM iteration (bench_lm.py --gpu's --cg-maxiter default)
DEVICES = (8, 64)
PARAMS = (10**4, 10**5, 10**6)
ROWS = (10**6, 10**4)  # the data parallel case, and the dual's (N n_out < P)
N_OUT = 1
N_IN = 16
SOLVERS = ("dense", "accumulate", "cg", "dual", "dual, J Jᵀ")


class Network(NamedTuple):
    """The interconnect of ``p`` devices: bus bandwidth (bytes/s) and latency per collective (s)."""

    name: str
    bandwidth: float
    latency: float


def network(p: int) -> Network:
    """The interconnect assumed for ``p`` devices.

    Args:
        p: the number of devices: up to 8 share a node (NVLink and NVSwitch), more span nodes.

    Returns:
        ``Network``: within a node ~400 GB/s all-reduce bus bandwidth and 10 us per collective; across
        nodes one InfiniBand NDR port per GPU, 400 Gb/s = 50 GB/s, and 30 us.
    """
    if p <= 8:
        return Network("NVLink, one node of 8", 400e9, 10e-6)
    return Network("InfiniBand NDR 400 Gb/s per GPU, nodes of 8", 50e9, 30e-6)


def all_reduce_s(nbytes: float, p: int) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``p`` devices: ``2 (p - 1) / p * S / B + L``.

    Args:
        nbytes: the size ``S`` of the array every device holds and gets back summed.
        p: devices.

    Returns:
        Seconds (0 for one device).
    """
    net = network(p)
    return 0.0 if p == 1 else 2 * (p - 1) / p * nbytes / net.bandwidth + net.latency


def all_gather_s(nbytes: float, p: int) -> float:
    """Seconds of a ring all-gather whose result is ``nbytes``: ``(p - 1) / p * S / B + L``.

    Args:
        nbytes: the size ``S`` of the gathered array (each device contributes ``S / p``).
        p: devices.

    Returns:
        Seconds (0 for one device).
    """
    net = network(p)
    return 0.0 if p == 1 else (p - 1) / p * nbytes / net.bandwidth + net.latency


class Cost(NamedTuple):
    """One step's cost on each device.

    ``volume_bytes``: the sizes ``S`` of the arrays the step's collectives sum or gather, added up
    (a ring all-reduce of ``S`` sends ``2 (p - 1) / p * S`` from each device, an all-gather
    ``(p - 1) / p * S``); ``comm_s`` their time; ``flops`` and ``compute_s`` the arithmetic on each
    device; ``memory_bytes`` the largest arrays one device holds at once.
    """

    solver: str
    N: int
    P: int
    p: int
    volume_bytes: float
    comm_s: float
    flops: float
    compute_s: float
    memory_bytes: float

    @property
    def total_s(self) -> float:
        """Compute plus communication, seconds (no overlap)."""
        return self.compute_s + self.comm_s

    @property
    def fits(self) -> bool:
        """Whether the memory fits one device."""
        return self.memory_bytes <= MEMORY_BYTES


def widths(P: int) -> tuple[int, int, int, int]:
    """The layer widths of the network assumed for ``P`` parameters.

    Args:
        P: parameters.

    Returns:
        ``(N_IN, h, h, N_OUT)``, ``h`` the integer width whose ``N_IN h + h + h^2 + h + h N_OUT + N_OUT``
        parameters come closest to ``P``.
    """
    a, b, c = 1, N_IN + 2 + N_OUT, N_OUT - P
    h = round((-b + math.sqrt(b * b - 4 * a * c)) / 2)
    return N_IN, h, h, N_OUT


def activations_bytes(n: float, P: int) -> float:
    """The activations (and their tangents or deltas) of ``n`` examples of the network assumed.

    Args:
        n: examples on the device.
        P: parameters (``widths``).

    Returns:
        Bytes, ``4 n (2 h + n_out)`` floats.
    """
    return 4 * n * sum(widths(P)[1:]) * FLOAT_BYTES


def _rate(flops: float, efficiency: float) -> float:
    return flops / (PEAK_FLOPS * efficiency)


def lm_iteration(solver: str, N: int, P: int, p: int, cg_iters: int = CG_ITERS) -> Cost:
    """One Levenberg-Marquardt iteration (linearise, one damped solve, the trial's forward pass).

    Args:
        solver: one of ``SOLVERS``.
        N: examples in all (``N_OUT`` outputs each).
        P: parameters.
        p: devices, each holding ``N / p`` examples.
        cg_iters: CG iterations (``"cg"`` only).

    Returns:
        ``Cost`` per device (the module docstring's formulas).
    """
    n, r, R, s = N / p, N * N_OUT / p, N * N_OUT, FLOAT_BYTES
    ar = lambda floats: (floats * s, all_reduce_s(floats * s, p))
    ag = lambda floats: (floats * s, all_gather_s(floats * s, p))
    trial = 2 * n * P
    acts = activations_bytes(n, P)
    if solver in ("dense", "accumulate"):
        jac, gram, chol, tri = (2 + 4 * N_OUT) * n * P, 2 * r * P**2, P**3 / 3, 2 * P**2
        volume, comm = ar(P**2 + P)
        compute = _rate(jac + trial, PASS_EFFICIENCY) + _rate(gram, GEMM_EFFICIENCY)
        compute += _rate(chol + tri, CHOLESKY_EFFICIENCY)
        j_rows = r if solver == "dense" else min(r, CHUNK_ROWS * N_OUT)
        memory = (2 * P**2 + j_rows * P + 3 * P) * s + acts
        return Cost(solver, N, P, p, volume, comm, jac + gram + chol + tri + trial, compute, memory)
    if solver == "cg":
        grad, product = 6 * n * P, 8 * n * P
        volume, comm = ar(P)
        volume, comm = volume * (1 + cg_iters), comm * (1 + cg_iters)
        flops = grad + cg_iters * product + trial
        return Cost(solver, N, P, p, volume, comm, flops, _rate(flops, PASS_EFFICIENCY), 6 * P * s + acts)
    if solver in ("dual", "dual, J Jᵀ"):
        chol, tri = R**3 / 3, 2 * R**2
        (vk, ck), (vg, cg_) = ag(R * R), ar(2 * P)
        if solver == "dual":
            s_ = widths(P)
            layers = list(zip(s_[:-1], s_[1:]))
            passes = (6 + 2 * N_OUT) * n * P + 4 * n * P + trial
            gram = 2 * r * R * sum(fan_in + fan_out + 1 for fan_in, fan_out in layers)
            vj, cj = ag(sum(R * fan_out + N * fan_in for fan_in, fan_out in layers))
            memory = (2 * R**2 + 3 * P) * s + vj + acts
        else:
            passes = (2 + 4 * N_OUT) * n * P + 4 * n * P + trial
            gram = 2 * r * R * P
            vj, cj = ag(R * P)
            memory = (2 * R**2 + 2 * r * P + 3 * P) * s + acts
        compute = _rate(passes, PASS_EFFICIENCY) + _rate(gram, GEMM_EFFICIENCY)
        compute += _rate(chol + tri, CHOLESKY_EFFICIENCY)
        flops = passes + gram + chol + tri
        return Cost(solver, N, P, p, vj + vk + vg, cj + ck + cg_, flops, compute, memory)
    raise ValueError(f"solver must be one of {SOLVERS}; got {solver!r}")


def first_order(kind: str, N: int, P: int, p: int) -> Cost:
    """One training step (``"train step"``: a gradient and the optimizer's update) or one
    Hessian-vector product (``"HVP"``, forward-over-reverse: ``14 n P``).

    Args:
        kind: ``"train step"`` or ``"HVP"``.
        N: examples in the batch, in all.
        P: parameters.
        p: devices.

    Returns:
        ``Cost`` per device: its all-reduce is one ``P``-vector.
    """
    if kind not in ("train step", "HVP"):
        raise ValueError(f"kind must be 'train step' or 'HVP'; got {kind!r}")
    n = N / p
    flops = {"train step": 6 * n * P + 10 * P, "HVP": 14 * n * P}[kind]
    memory = 4 * P * FLOAT_BYTES + activations_bytes(n, P) * (2 if kind == "HVP" else 1)
    return Cost(
        kind,
        N,
        P,
        p,
        P * FLOAT_BYTES,
        all_reduce_s(P * FLOAT_BYTES, p),
        flops,
        _rate(flops, PASS_EFFICIENCY),
        memory,
    )


def cg_break_even(N: int, P: int, p: int, exact: Cost) -> float:
    """The CG iterations at which one cg iteration costs as much as ``exact``'s.

    Args:
        N: examples.
        P: parameters.
        p: devices.
        exact: an exact solver's ``Cost`` at the same sizes.

    Returns:
        ``(T_exact - T_cg(0)) / (T_cg(1) - T_cg(0))``: below it, cg's iteration is the cheaper.
    """
    t0, t1 = (lm_iteration("cg", N, P, p, k).total_s for k in (0, 1))
    return (exact.total_s - t0) / (t1 - t0)


# --- markdown ----------------------------------------------------------------------------------


def si(value: float, unit: str) -> str:
    """``value`` with an SI prefix and 3 significant digits, e.g. ``si(8e8, "B") == "800 MB"``.

    Args:
        value: a non-negative number.
        unit: the unit's symbol.

    Returns:
        Text.
    """
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def seconds(t: float) -> str:
    """A duration in the unit that reads best (us, ms, s, min, h).

    Args:
        t: seconds.

    Returns:
        Text with 3 significant digits.
    """
    for limit, scale, unit in ((1e-3, 1e6, "us"), (1, 1e3, "ms"), (120, 1, "s"), (7200, 1 / 60, "min")):
        if t < limit:
            return f"{t * scale:.3g} {unit}"
    return f"{t / 3600:.3g} h"


def power(n: int) -> str:
    """A power of ten as ``10⁴``-style text.

    Args:
        n: a positive integer.

    Returns:
        ``"10⁴"`` for ``10**4``; other numbers with thousands separators.
    """
    k = round(math.log10(n))
    sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    return f"10{str(k).translate(sup)}" if 10**k == n else f"{n:,}"


def assumptions() -> str:
    """The rates and sizes the model assumes, as a markdown table.

    Returns:
        Markdown.
    """
    rows = [
        ("number format", f"float64 ({FLOAT_BYTES} bytes)"),
        ("device", "H100 SXM class, 80 GB of HBM3"),
        (
            "peak arithmetic",
            f"{PEAK_FLOPS / 1e12:g} TFLOP/s (FP64 tensor cores; FP32 without them: the same)",
        ),
        ("efficiency of the Gram matmuls", f"{GEMM_EFFICIENCY:g}"),
        ("efficiency of a Cholesky factorisation", f"{CHOLESKY_EFFICIENCY:g}"),
        ("efficiency of the passes (forward, backward, R-operator)", f"{PASS_EFFICIENCY:g}"),
        *(
            (
                f"collectives on {p} devices",
                f"{network(p).name}: bus bandwidth {network(p).bandwidth / 1e9:g} GB/s, "
                f"{network(p).latency * 1e6:g} us each",
            )
            for p in DEVICES
        ),
        ("examples", " and ".join(f"N = {power(N)}" for N in ROWS) + f", n_out = {N_OUT}"),
        (
            "network",
            f"{N_IN} inputs, two tanh layers of width h, {N_OUT} output "
            f"(P = h² + {N_IN + 2 + N_OUT}h + {N_OUT}): h = "
            + ", ".join(f"{widths(P)[1]} for P = {power(P)}" for P in PARAMS),
        ),
        ("CG iterations per LM iteration", str(CG_ITERS)),
        ("accumulate's chunk", f"{CHUNK_ROWS} rows"),
    ]
    return "\n".join(["| quantity | assumed |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def cost_row(c: Cost) -> str:
    """One table row.

    Args:
        c: the cost.

    Returns:
        Markdown: solver, P, p, collective volume, communication, flops, compute, memory (✗ where it
        does not fit) and total (in parentheses where it does not fit).
    """
    memory = si(c.memory_bytes, "B") + ("" if c.fits else " ✗")
    total = seconds(c.total_s) if c.fits else f"({seconds(c.total_s)})"
    return (
        f"| {c.solver} | {power(c.P)} | {c.p} | {si(c.volume_bytes, 'B')} | {seconds(c.comm_s)} | "
        f"{si(c.flops, 'FLOP')} | {seconds(c.compute_s)} | {memory} | {total} |"
    )


HEAD = (
    "| solver | P | devices | all-reduced / gathered | communication | flops per device | compute | "
    "memory per device | total |\n|---|---|---|---|---|---|---|---|---|"
)


def lm_table(N: int) -> str:
    """Every solver's iteration at ``N`` examples, for each P and device count.

    Args:
        N: examples in all.

    Returns:
        Markdown; a memory over 80 GB is marked ✗ and its time put in parentheses.
    """
    lines = [HEAD]
    for P in PARAMS:
        for p in DEVICES:
            lines += [cost_row(lm_iteration(s, N, P, p)) for s in SOLVERS]
    return "\n".join(lines)


def first_order_table(N: int) -> str:
    """A training step and an HVP at ``N`` examples, for each P and device count.

    Args:
        N: examples in the batch.

    Returns:
        Markdown.
    """
    lines = [HEAD.replace("| solver |", "| step |", 1)]
    for P in PARAMS:
        for p in DEVICES:
            lines += [cost_row(first_order(k, N, P, p)) for k in ("train step", "HVP")]
    return "\n".join(lines)


def verdicts() -> str:
    """One sentence per case (N, P, devices): which solver's iteration is the cheapest, and when.

    Returns:
        A markdown list.
    """
    lines = []
    for N in ROWS:
        for P in PARAMS:
            for p in DEVICES:
                costs = {s: lm_iteration(s, N, P, p) for s in SOLVERS}
                exact = [c for s, c in costs.items() if s != "cg" and c.fits]
                cg = costs["cg"]
                head = f"- N = {power(N)}, P = {power(P)}, {p} devices: "
                if not exact:
                    lines.append(
                        head + f"only cg fits ({seconds(cg.total_s)} per iteration at {CG_ITERS} CG "
                        f"iterations, {si(cg.memory_bytes, 'B')} per device); no exact solver's "
                        "matrix fits in 80 GB."
                    )
                    continue
                fastest = min(c.total_s for c in exact)
                tied = sorted((c for c in exact if c.total_s <= 1.01 * fastest), key=lambda c: c.memory_bytes)
                best, k = tied[0], cg_break_even(N, P, p, tied[0])
                part = "communication" if best.comm_s > best.compute_s else "arithmetic"
                more = [c.solver for c in tied[1:] if c.memory_bytes > 1.01 * best.memory_bytes]
                same = [c.solver for c in tied[1:] if c.solver not in more]
                also = [
                    f"{' and '.join(names)} {'take' if len(names) > 1 else 'takes'} as long and "
                    + ("hold" if len(names) > 1 else "holds")
                    + (" more" if kind == "more" else " as much")
                    for names, kind in ((more, "more"), (same, "same"))
                    if names
                ]
                lines.append(
                    head + f"{best.solver} is the cheapest exact solve ({seconds(best.total_s)} per "
                    f"iteration, mostly {part}, {si(best.memory_bytes, 'B')} per device"
                    + "".join(f"; {x}" for x in also)
                    + f"); cg ({seconds(cg.total_s)} at {CG_ITERS} iterations) is cheaper while it needs "
                    f"fewer than {k:,.0f} CG iterations."
                )
    return "\n".join(lines)


def largest_fitting_P(solver: str, N: int, p: int, upper: int = 10**13) -> int:
    """The largest P whose iteration fits one device's memory (memory grows with P: bisection).

    Args:
        solver: one of ``SOLVERS``.
        N: examples.
        p: devices.
        upper: the largest P tried.

    Returns:
        That P, or 0 when not even P = 1 fits.
    """
    if not lm_iteration(solver, N, 1, p).fits:
        return 0
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if lm_iteration(solver, N, mid, p).fits else (lo, mid - 1)
    return lo


def limits_table() -> str:
    """The largest P each solver fits in 80 GB, for each N and device count.

    Returns:
        Markdown, P to two significant digits (— where nothing fits).
    """
    cols = [(N, p) for N in ROWS for p in DEVICES]
    lines = [
        "| solver | " + " | ".join(f"N = {power(N)}, {p} devices" for N, p in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for solver in SOLVERS:
        found = [largest_fitting_P(solver, N, p) for N, p in cols]
        lines.append(
            f"| {solver} | " + " | ".join(f"{float(f'{P:.2g}'):,.0f}" if P else "—" for P in found) + " |"
        )
    return "\n".join(lines)


def sections() -> dict[str, str]:
    """The page's generated sections.

    Returns:
        ``{name: markdown}``: ``assumptions``, ``lm-N`` for each N of ``ROWS``, ``limits``,
        ``first-order`` and ``verdicts``.
    """
    out = {"assumptions": assumptions()}
    out.update({f"lm-{N}": lm_table(N) for N in ROWS})
    out["limits"] = limits_table()
    out["first-order"] = first_order_table(ROWS[0])
    out["verdicts"] = verdicts()
    return out


MARKER = re.compile(
    r"(<!-- cluster_model: begin (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- cluster_model: end (?P=name) -->)",
    re.S,
)


def fill(page: str) -> str:
    """``page`` with every generated section replaced by the model's current text.

    Args:
        page: the markdown of docs/scale.md.

    Returns:
        The page, each section between its markers refreshed.

    Raises:
        ValueError: where the page lacks a section's markers, or names one the model does not make.
    """
    made = sections()
    found = [m.group("name") for m in MARKER.finditer(page)]
    if sorted(found) != sorted(made):
        raise ValueError(f"the page's generated sections are {sorted(found)}; the model makes {sorted(made)}")
    return MARKER.sub(lambda m: m.group(1) + made[m.group("name")] + "\n" + m.group(4), page)


def main(argv=None) -> int:
    """The command line (module docstring).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0, or 1 when ``--check`` finds the page out of date.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PAGE", help="refresh the generated sections of PAGE")
    group.add_argument("--check", metavar="PAGE", help="exit 1 if PAGE's generated sections are stale")
    args = p.parse_args(argv)
    if args.write or args.check:
        path = args.write or args.check
        with open(path) as f:
            page = f.read()
        new = fill(page)
        if args.check:
            print("up to date" if new == page else f"{path} is stale: python {sys.argv[0]} --write {path}")
            return int(new != page)
        with open(path, "w") as f:
            f.write(new)
        return 0
    for name, text in sections().items():
        print(f"<!-- {name} -->\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
