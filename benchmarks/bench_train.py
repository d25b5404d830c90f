"""Many runs in one program: the seed example (the NumPy tutorial's 3-3-1 sigmoid, lr 0.1, 10000
full-batch steps) trained from K independent initialisations by ``fb.train_many``, vmapped and
sharded over the machine's cores (one host device per core), against the bare vmapped scan
(``train.full_batch``: no stopping rules, no history) as the floor.

    python benchmarks/bench_train.py [--runs 1000] [--steps 10000] [--out runs/bench_train]

Target (issue 3): 1000 seeds x 10000 steps in <= 2 s on a 2-core CPU, after compilation.
"""

import os

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count()}")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import fbackprop as fb  # noqa: E402
from fbackprop.train import full_batch, shard_runs  # noqa: E402


def timed(fn, rounds):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return out, first, statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="runs/bench_train")
    args = p.parse_args(argv)
    net = fb.mlp([3, 3, 1], activation="sigmoid", init="uniform")
    x, y = fb.data.seed_example(np.float32)
    params = fb.init_many(net, jax.random.key(0), args.runs, jnp.float32)
    vg = fb.value_and_backprop(net, "squared_error")
    sgd = optax.sgd(0.1)  # one optimizer object: train_many compiles once and reuses the program
    bare = jax.jit(jax.vmap(lambda p: full_batch(vg, sgd, p, x, y, args.steps)))
    sharded = shard_runs(params)
    _, bare_first, bare_s = timed(lambda: bare(sharded), args.rounds)
    result, many_first, many_s = timed(
        lambda: fb.train_many(net, "squared_error", params, x, y, sgd, epochs=args.steps), args.rounds
    )
    solved = float(jnp.mean(result.history.loss[:, -1] < 1e-3))
    rows = {
        "devices": len(jax.devices()),
        "runs": args.runs,
        "steps": args.steps,
        "train_many_s": many_s,
        "train_many_first_call_s": many_first,
        "bare_scan_s": bare_s,
        "bare_first_call_s": bare_first,
        "fraction_solved": solved,
        "target_s": 2.0,
        "met": many_s <= 2.0,
    }
    print(
        f"{args.runs} runs x {args.steps} steps on {rows['devices']} host devices: train_many {many_s:.2f} s "
        f"(first call {many_first:.1f} s), bare vmapped scan {bare_s:.2f} s; target <= 2 s: "
        f"{'met' if rows['met'] else 'NOT met'}; {100 * solved:.1f}% of runs reach loss < 1e-3"
    )
    fb.results.write_json(
        os.path.join(args.out, "results.json"),
        {"config": vars(args), "versions": fb.results.versions(), **rows},
    )


if __name__ == "__main__":
    main()
