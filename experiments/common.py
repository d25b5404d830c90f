"""What every experiment script shares: its flags, and how it records what it found.

Each experiment is ``main(argv) -> dict``: it parses ``--seed/--quick/--out``, runs, and hands
``finish`` its metrics, its claims ``{sentence: held}`` and its figures; ``finish`` writes
``<out>/results.json`` (config, versions, metrics, claims, seconds) and one PNG a figure, all
atomically, and prints the claims. The test suite runs every ``main(["--quick", ...])`` and
asserts each claim.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MPLBACKEND", "Agg")

import fbackprop as fb  # noqa: E402


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, ``(default: 0)``, after its help text.

    Left out where it says nothing: flags (``store_true``, default False) and options whose default
    is None (their help says what they default to, e.g. "default 1000, quick 200").
    """

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The flags every experiment takes.

    Args:
        doc: the script's docstring; its first line is the description ``--help`` shows.
        name: the experiment's name; results go to ``runs/<name>`` by default.

    Returns:
        An ``argparse.ArgumentParser`` with ``--seed``, ``--quick`` and ``--out``, whose ``--help``
        shows every option's default (``HelpFormatter``); add the experiment's own options to it,
        each with a help text.
    """
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="the seed every random choice derives from")
    p.add_argument("--quick", action="store_true", help="small settings (the test suite's and the demo's)")
    p.add_argument("--out", default=os.path.join("runs", name), help="folder for results.json and the plots")
    return p


def finish(
    name: str,
    args: argparse.Namespace,
    t0: float,
    metrics: dict,
    claims: dict[str, bool],
    figures: dict | None = None,
    table: str | None = None,
) -> dict:
    """Write results.json, ``<figure name>.png`` for each figure and ``table.md``; print the claims.

    ``t0`` is the ``time.perf_counter()`` at the start of the run; returns what results.json holds.
    """
    import matplotlib.pyplot as plt

    claims = {k: bool(v) for k, v in claims.items()}
    pngs = {}
    for fig_name, fig in (figures or {}).items():
        pngs[fig_name] = str(fb.results.write_figure(os.path.join(args.out, f"{fig_name}.png"), fig))
        plt.close(fig)
    if table is not None:
        fb.results.write_text(os.path.join(args.out, "table.md"), table + "\n")
    result = {
        "experiment": name,
        "config": vars(args),
        "versions": fb.results.versions(),
        "metrics": metrics,
        "claims": claims,
        "figures": pngs,
        "seconds": time.perf_counter() - t0,
    }
    fb.results.write_json(os.path.join(args.out, "results.json"), result)
    if table is not None:
        print(table)
    for claim, held in claims.items():
        print(f"  [{'held' if held else 'FAILED'}] {claim}")
    print(
        f"{name}: {sum(claims.values())}/{len(claims)} claims held in {result['seconds']:.1f} s; results in "
        f"{args.out}"
    )
    return result
