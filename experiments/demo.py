"""fbackprop's main job: a curated tour of the experiments, written up in runs/demo/REPORT.md.

    make demo            (python experiments/demo.py [--quick] [--seed 0] [--out runs/demo])

Runs, each into its own folder under --out: gradcheck (the hand-written gradients against
jax.grad, forward mode and finite differences over a matrix of networks, float32 and float64),
seed_example (the 6-example, 3-input toy of the classic NumPy backpropagation tutorial,
trained by the hand-written backward pass), xor (a 2-2-1
network learns XOR over 1000 seeds in one compiled program; a perceptron cannot), cost_scaling
(backpropagation's efficiency argument, timed), digits (an MLP on scikit-learn's digits with Adam),
cnn_digits (a small CNN on the same digits as 8x8 images, beside the MLP), residual_depth (deep sigmoid
networks: the vanishing gradient, and how residual connections and layer norm cure it) and
lm_vs_first_order (Levenberg-Marquardt against gradient descent and Adam on sin and peaks).
Then writes REPORT.md: every experiment's table, figures and claims, and whether each claim held.
``--quick`` runs every experiment in its quick setting (the test suite's). Each experiment runs in
its own Python process, so each sets up JAX its own way (float64, XLA flags) and a crash in one
is reported as a failed claim, not the end of the demo.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time

import fbackprop as fb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (experiments/common.py: the --help formatter)

HERE = os.path.dirname(os.path.abspath(__file__))

#: (experiment, its flags in the demo): the curated tour, in reading order.
TOUR = (
    ("gradcheck", ["--quick"]),
    ("seed_example", []),
    ("xor", ["--quick"]),
    ("cost_scaling", ["--quick"]),
    ("digits", []),
    ("cnn_digits", ["--quick"]),
    ("residual_depth", ["--quick"]),
    ("lm_vs_first_order", ["--quick"]),
)

INTRO = """\
fbackprop writes backpropagation out in matrix form, as the textbooks do
(`delta^{l-1} = f'(z^{l-1}) * (W^l)^T delta^l`, `dC/dW^l = delta^l (a^{l-1})^T`), beside JAX's
autodiff, and checks the two against each other. This report was produced by one command
(`make demo`). Each section is one script in `experiments/`: run it alone with `--help` to see its
settings; its numbers are in `<name>/results.json`. Every claim below was computed from what was
measured in this run; none is hard-coded.
"""


def run_experiment(name: str, flags: list[str], out: str) -> tuple[dict, str]:
    """Run ``experiments/<name>.py`` in a fresh process; its results.json (or a failed claim), docstring."""
    script = os.path.join(HERE, f"{name}.py")
    with open(script) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or name
    t0 = time.perf_counter()
    code = subprocess.run([sys.executable, script, *flags, "--out", out]).returncode
    path = os.path.join(out, "results.json")
    if code == 0 and os.path.exists(path):
        with open(path) as f:
            return json.load(f), doc
    return {
        "experiment": name,
        "claims": {f"{name}.py ran to the end (exit code {code})": False},
        "figures": {},
        "seconds": time.perf_counter() - t0,
        "versions": fb.results.versions(),
    }, doc


def section(result: dict, doc: str, out: str) -> str:
    """One experiment's part of the report: its title, table, figures (relative links) and claims."""
    name = result["experiment"]
    command = " ".join([f"python experiments/{name}.py", *result["config_flags"]])
    lines = [f"## {name}: {doc.strip().splitlines()[0]}", "", f"`{command}` ({result['seconds']:.1f} s)", ""]
    table = os.path.join(out, name, "table.md")
    if os.path.exists(table):
        with open(table) as f:
            lines += [f.read().rstrip(), ""]
    for fig, path in result["figures"].items():
        lines += [f"![{name}: {fig}]({os.path.relpath(path, out)})", ""]
    lines += [f"- {'held' if held else '**FAILED**'}: {claim}" for claim, held in result["claims"].items()]
    return "\n".join(lines) + "\n"


def report(results: list[tuple[dict, str]], out: str, seconds: float) -> str:
    """REPORT.md: the introduction, the claims at a glance, then one section per experiment."""
    claims = [(r["experiment"], c, h) for r, _ in results for c, h in r["claims"].items()]
    held = sum(h for _, _, h in claims)
    head = [
        "# fbackprop demo report",
        "",
        INTRO,
        f"**{held} of {len(claims)} claims held** "
        f"(fbackprop {fb.__version__}, JAX {results[0][0]['versions']['jax']}, "
        f"{results[0][0]['versions']['device']}; {seconds:.0f} s in all).",
        "",
        "| experiment | claim | held |",
        "|---|---|---|",
    ]
    head += [f"| {e} | {c} | {'yes' if h else '**NO**'} |" for e, c, h in claims]
    return "\n".join(head) + "\n\n" + "\n".join(section(r, doc, out) for r, doc in results)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=common.HelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="every experiment in its quick setting (the test suite's)"
    )
    p.add_argument("--seed", type=int, default=0, help="the seed passed to every experiment (--seed)")
    p.add_argument(
        "--out", default="runs/demo", help="folder for REPORT.md, results.json and one folder per experiment"
    )
    p.add_argument(
        "--experiments",
        default=",".join(name for name, _ in TOUR),
        help="which of the tour to run, comma-separated, in the tour's order",
    )
    args = p.parse_args(argv)
    chosen = args.experiments.split(",")
    unknown = sorted(set(chosen) - {name for name, _ in TOUR})
    if unknown:
        p.error(f"unknown experiments {unknown}; the tour has {[name for name, _ in TOUR]}")
    t0 = time.perf_counter()
    results = []
    for name, flags in (step for step in TOUR if step[0] in chosen):
        flags = sorted(set(flags) | ({"--quick"} if args.quick else set()))
        flags = [*flags, "--seed", str(args.seed)]
        print(f"\n== {name} {' '.join(flags)} ==\n", flush=True)
        result, doc = run_experiment(name, flags, os.path.join(args.out, name))
        results.append(({**result, "config_flags": flags}, doc))
    seconds = time.perf_counter() - t0
    path = fb.results.write_text(os.path.join(args.out, "REPORT.md"), report(results, args.out, seconds))
    claims = {f"{r['experiment']}: {c}": h for r, _ in results for c, h in r["claims"].items()}
    fb.results.write_json(
        os.path.join(args.out, "results.json"),
        {"config": vars(args), "versions": fb.results.versions(), "claims": claims, "seconds": seconds},
    )
    print(f"\n{sum(claims.values())}/{len(claims)} claims held in {seconds:.0f} s; report in {path}")
    return 0 if all(claims.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
