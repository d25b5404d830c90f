"""fbackprop's main job: verify the hand-written gradients, then train seed 001's example with them.

    make demo            (python experiments/demo.py [--quick] [--out runs/demo])

Prints the gradient-verification table (backprop vs jax.grad vs forward mode vs finite
differences over a matrix of networks) and seed 001's example trained by the hand-written
backward pass, its final outputs beside the targets. Writes runs/demo/results.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import gradcheck  # noqa: E402  (sets the XLA flags and float64 before JAX starts)
import seed_example  # noqa: E402

import fbackprop as fb  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer networks (the test suite's setting)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo")
    args = p.parse_args(argv)
    t0 = time.perf_counter()

    print("== 1. Gradient verification (float64): max relative error against jax.grad ==\n", flush=True)
    rows = gradcheck.run(args.quick, args.seed)
    print(gradcheck.table(rows))
    check = gradcheck.summary(rows)
    print(f"\n[{'held' if check['held'] else 'FAILED'}] {check['claim']} ({check['networks']} networks)\n")

    print("== 2. Seed 001's example: 3-3-1 sigmoid net, lr 0.1, 10000 full-batch steps in lax.scan ==\n", flush=True)
    seed = seed_example.run()
    print(seed_example.report(seed))
    print("\n".join(f"  [{'held' if v else 'FAILED'}] {k}" for k, v in seed["claims"].items()))

    claims = {check["claim"]: check["held"], **seed["claims"]}
    result = {"config": vars(args), "versions": fb.results.versions(), "claims": claims,
              "gradcheck": {**check, "rows": [r._asdict() for r in rows]},
              "seed_example": {k: v for k, v in seed.items() if k != "losses"},
              "seconds": time.perf_counter() - t0}
    path = fb.results.write_json(os.path.join(args.out, "results.json"), result)
    held = sum(claims.values())
    print(f"\n{held}/{len(claims)} claims held; results in {path} ({result['seconds']:.0f} s)")
    return 0 if held == len(claims) else 1


if __name__ == "__main__":
    sys.exit(main())
