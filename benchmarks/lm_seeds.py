"""Trials to the target over seeds: fbackprop's Levenberg-Marquardt with and without the line search
along a rejected trial's step (``line_search=True``), and with truncated CG steps (``lm_entries.INEXACT_CG``)
and the search, on every problem of ``bench_lm.py``.

    python benchmarks/lm_seeds.py [--seeds 5] [--problems sine,parity3,peaks,franke,moons] [--out DIR]

For each problem, damping rule (Marquardt, Nielsen) and seed (the init key of ``lm_problems``), one
run of the problem's budget with the solver ``"auto"`` picks (the first two variants) or truncated CG;
the count is the first trial whose loss is at most 1e-3 of the start's (``None``: not within the
budget, counted as the budget in the median). Counts, not times: the same on any machine up to
rounding, so the comparison is a median over seeds rather than one trajectory.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from lm_entries import INEXACT_CG
from lm_problems import PROBLEMS, TARGET, make_problems

import fbackprop as fb

#: label -> (solver, line_search)
VARIANTS = {
    "classic": ("auto", None),
    "line search": ("auto", True),
    "truncated CG + search": (INEXACT_CG, True),
}


def trials_to_target(pb, damping: str, variant: tuple) -> int | None:
    """The first trial at which the loss is <= ``TARGET`` x the start's, or ``None``."""
    solver, line_search = variant
    r = fb.levenberg_marquardt(
        pb.net, pb.params, pb.x, pb.y, loss=pb.loss, solver=solver, damping=damping, max_steps=pb.budget,
        line_search=line_search,
    )  # fmt: skip
    C = np.asarray(r.history.loss)
    hit = np.nonzero(C <= TARGET * C[0])[0]
    return int(hit[0]) if hit.size else None


def measure(names, seeds: int) -> list[dict]:
    """One row per problem and damping: the counts per seed of each variant and their medians."""
    rows = []
    for name in names:
        problems = [make_problems(False, seed=s, names=[name])[0] for s in range(seeds)]
        for damping in ("marquardt", "nielsen"):
            row = {"problem": name, "damping": damping, "budget": problems[0].budget}
            for label, variant in VARIANTS.items():
                counts = [trials_to_target(pb, damping, variant) for pb in problems]
                row[label] = counts
                budget = row["budget"]
                row[f"median {label}"] = float(np.median([budget if c is None else c for c in counts]))
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    cells = [row["problem"], row["damping"]]
    for label in VARIANTS:
        cells.append(f"{row[f'median {label}']:g} ({', '.join(str(c) for c in row[label])})")
    ratios = [row[f"median {label}"] / row["median classic"] for label in list(VARIANTS)[1:]]
    return "| " + " | ".join(cells) + "".join(f" | {r:.2f}" for r in ratios) + " |"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--problems", default=",".join(PROBLEMS))
    p.add_argument("--out", default="runs/lm_seeds")
    args = p.parse_args(argv)
    heads = [f"{label}: median (per seed)" for label in VARIANTS]
    ratios = [f"{label} / classic" for label in list(VARIANTS)[1:]]
    print("| problem | damping | " + " | ".join(heads + ratios) + " |")
    print("|---" * (2 + len(heads) + len(ratios)) + "|")
    rows = measure(args.problems.split(","), args.seeds)
    fb.results.write_json(os.path.join(args.out, "results.json"), {"seeds": args.seeds, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
