"""The arithmetic floor of one Levenberg-Marquardt iteration, and where an iteration spends its time.

Floor. One trial of fbackprop's LM (``solvers.py``) costs, for an MLP with widths ``s_0 .. s_L`` on
``N`` examples, ``K = s_L`` outputs, ``M = N K`` Jacobian rows, ``P`` params and one forward pass
``F = 2 N sum_l s_{l-1} s_l`` flops:

- every trial: the factorisation (Cholesky ``n^3 / 3`` of ``G + mu D``, n = P, for ``dense``; of
  ``K + mu I``, n = M, for ``dual`` with squared error; LU ``2 M^3 / 3`` of ``H K + mu I`` for
  ``dual`` with another loss; for softmax cross-entropy, Cholesky of ``S^T K S + mu I``, n = R =
  ``N (K - 1)``, with two right-hand sides: ``softmax_dual.py``), its triangular solves (``2 n^2``
  a right-hand side), the model's decrease (``2 n^2``), ``J^T w`` (``dual``: one backward pass,
  ``2 F``) and the trial's loss (``F``);
- every accepted trial, the linearisation at the new point: forward and gradient (``3 F``) and
  - ``dense``: ``J`` (K unit-seeded backward passes, ``2 K F``), ``G = J^T H J`` (``2 M P^2``; the
    ``K x K`` blocks of ``H`` add ``2 N K^2 P``), ``g = J^T u`` (``2 M P``);
  - ``dual``: the K unit-seeded backward passes of the deltas (``2 K F``) and, per layer,
    ``(delta delta^T) * (a a^T + 1)``: ``2 M^2 s_l + 2 N^2 s_{l-1} + 2 M^2`` (``fb.jacobian_gram``);
    for softmax cross-entropy the ``R = N (K - 1)`` rows of ``S^T J`` (M replaced by R there).

The floor of a trial is those flop counts over THIS machine's rates, measured in the same process in
float64 at the problem's sizes: the factorisation with its two triangular solves at the rate of the
very call the solver makes at the factored size (``solvers.spd_solve``: LAPACK's Cholesky and two
triangular solves; ``jnp.linalg.solve`` for the LU), and a matmul at the problem's largest product
shape (``(M, P) @ (P, M)`` for ``dual``, ``(P, M) @ (M, P)`` for ``dense``), which the other pieces
(skinny products, elementwise work) are credited with: a floor, not a prediction. (Credited with
the matmul's rate, the two triangular solves of ``2 n^2`` flops would cost 0.1 us at ``n = 31``,
where LAPACK takes 2 us.) An iteration's floor weights the linearisation by the
fraction of trials accepted in the run.
"""

from __future__ import annotations

import importlib
import statistics

import jax
import jax.numpy as jnp
from lm_problems import Problem
from timing import block, timed_rounds

import fbackprop as fb
from fbackprop.optim import dual as D
from fbackprop.optim import softmax_dual
from fbackprop.optim import solvers as S
from fbackprop.optim.solvers import spd_solve
from fbackprop.validate import check_call

fb_backprop = importlib.import_module("fbackprop.backprop")  # the module (fb.backprop is the function)


def _forward_flops(pb: Problem) -> float:
    s = pb.sizes
    return 2.0 * pb.N * sum(a * b for a, b in zip(s[:-1], s[1:]))


def trial_flops(pb: Problem, solver: str) -> dict[str, tuple[float, str]]:
    """The flops of one trial's pieces, each with the rate that prices it (``"chol"``, ``"lu"``, ``"mm"``).

    Args:
        pb: the problem.
        solver: ``"dense"`` or ``"dual"`` (the solvers with a factorisation; others get ``{}``).

    Returns:
        ``{piece: (flops, rate kind)}``.
    """
    F, N, K, M, P, s = _forward_flops(pb), pb.N, pb.net.n_out, pb.M, pb.P, pb.sizes
    se = pb.loss == "squared_error"
    if solver == "dense":
        return {
            "Cholesky of G + mu D, 2 triangular solves (P^3/3 + 2P^2)": (P**3 / 3 + 2 * P**2, "chol_solve"),
            "model decrease (2 P^2)": (2.0 * P**2, "mm"),
            "trial loss (F)": (F, "mm"),
        }
    if solver == "dual" and pb.loss == "cross_entropy":  # softmax_dual.py: R = N (K - 1) rows
        R = dual_rows(pb)
        return {
            "Cholesky of S^T K S + mu I, 4 solves (R^3/3 + 4R^2)": (R**3 / 3 + 4 * R**2, "chol_solve"),
            "the seed S w (2 N K (K - 1))": (2.0 * N * K * (K - 1), "mm"),
            "J^T w by a backward pass (2F)": (2 * F, "mm"),
            "trial loss (F)": (F, "mm"),
        }
    if solver == "dual":
        fact = (
            ("Cholesky of K + mu I, 2 triangular solves (M^3/3 + 2M^2)", (M**3 / 3 + 2 * M**2, "chol_solve"))
            if se
            else ("LU of H K + mu I, 2 triangular solves (2M^3/3 + 2M^2)", (2 * M**3 / 3 + 2 * M**2, "lu"))
        )
        return {
            fact[0]: fact[1],
            "K w, H K (2 M^2" + ("" if se else " + 2 N K^2 M") + ")": (
                2.0 * M**2 + (0 if se else 2.0 * N * K**2 * M),
                "mm",
            ),
            "J^T w by a backward pass (2F)": (2 * F, "mm"),
            "trial loss (F)": (F, "mm"),
        }
    del s
    return {}


def linearize_flops(pb: Problem, solver: str) -> dict[str, tuple[float, str]]:
    """The flops of one linearisation (after an accepted trial), as ``trial_flops``."""
    F, N, K, M, P, s = _forward_flops(pb), pb.N, pb.net.n_out, pb.M, pb.P, pb.sizes
    if solver == "dense":
        H = 0.0 if pb.loss == "squared_error" else 2.0 * N * K**2 * P
        return {
            "forward + gradient (3F)": (3 * F, "mm"),
            "J by K unit-seeded passes (2KF)": (2 * K * F, "mm"),
            "G = J^T H J (2 M P^2)": (2.0 * M * P**2 + H, "mm"),
            "g = J^T u (2 M P)": (2.0 * M * P, "mm"),
        }
    if solver == "dual":
        R = dual_rows(pb)  # K's rows: M, or N (K - 1) seeded by the softmax factor (softmax_dual.py)
        gram = sum(2.0 * R**2 * b + 2.0 * N**2 * a + 2.0 * R**2 for a, b in zip(s[:-1], s[1:]))
        return {
            "forward + gradient (3F)": (3 * F, "mm"),
            "deltas of K unit-seeded passes (2KF)": (2 * K * F, "mm"),
            "K = J J^T from the layers": (gram, "mm"),
        }
    return {}


def dual_rows(pb: Problem) -> int:
    """The dual system's size: ``N (K - 1)`` for softmax cross-entropy (``softmax_dual.py``), else ``M``."""
    return pb.N * (pb.net.n_out - 1) if pb.loss == "cross_entropy" else pb.M


def _rate(fn, x, flops: float, rounds: int) -> float:
    """GFLOP/s of ``fn(x)`` (one array in, one out) repeated inside one compiled loop, so that no
    dispatch is counted: each repetition reads ``x + 0 * (the last output's first entry)``, so XLA can
    neither hoist nor fold it. The median of ``rounds`` timings; about 0.1 GFLOP (up to 1000 repetitions)
    a timing."""
    reps = int(min(1000, max(1, 1e8 // max(flops, 1.0))))

    def looped(x):
        def body(_, c):
            return jnp.ravel(fn(x + 0.0 * c))[0]

        return jax.lax.fori_loop(0, reps, body, jnp.zeros((), x.dtype))

    compiled = jax.jit(looped)
    block(compiled(x))
    times = timed_rounds({"f": lambda: compiled(x)}, rounds)["f"]
    return reps * flops / statistics.median(times) / 1e9


def measured_rates(pb: Problem, solver: str, rounds: int = 5) -> dict[str, float]:
    """This machine's float64 rates (GFLOP/s) at the problem's sizes, measured now, in this process.

    Args:
        pb: the problem.
        solver: ``"dense"`` or ``"dual"``.
        rounds: timing rounds (median).

    Returns:
        ``{"mm": ..., "chol": ..., "lu": ..., "mm_shape": str, "n": factored size}``.
    """
    n, (a, b) = (pb.P, (pb.P, pb.M)) if solver == "dense" else (dual_rows(pb), (pb.M, pb.P))
    key = jax.random.key(1)
    A = jax.random.normal(key, (a, b), jnp.float64)
    S = A[:, : min(a, b)] @ A[:, : min(a, b)].T / b + jnp.eye(a)  # SPD, (a, a)
    S = S[:n, :n]
    hi = jax.lax.Precision.HIGHEST
    v = S[0]
    return {
        "mm": _rate(lambda A: jnp.matmul(A, A.T, precision=hi), A, 2.0 * a * a * b, rounds),
        "chol": _rate(lambda S: jax.lax.linalg.cholesky(S.T, symmetrize_input=False), S, n**3 / 3, rounds),
        "chol_solve": _rate(lambda S: spd_solve(S, v), S, n**3 / 3 + 2.0 * n**2, rounds),
        "lu": _rate(lambda S: jnp.linalg.solve(S, v), S, 2 * n**3 / 3 + 2.0 * n**2, rounds),
        "mm_shape": f"({a}, {b}) @ ({b}, {a})",
        "n": n,
    }


def floor(pb: Problem, solver: str, rates: dict, accepted_fraction: float) -> dict:
    """The floor of one iteration (seconds) from ``trial_flops``, ``linearize_flops`` and ``rates``.

    Args:
        pb: the problem.
        solver: ``"dense"`` or ``"dual"``.
        rates: ``measured_rates``' output.
        accepted_fraction: the fraction of the run's trials accepted (each is followed by a linearisation).

    Returns:
        ``{"s_per_iter": floor, "gflop_per_iter": flops, "pieces": {piece: seconds}, ...}``.
    """
    price = lambda flops, kind: flops / (rates[kind] * 1e9)
    pieces = {k: price(*v) for k, v in trial_flops(pb, solver).items()}
    pieces.update({k: accepted_fraction * price(*v) for k, v in linearize_flops(pb, solver).items()})
    flops = sum(v[0] for v in trial_flops(pb, solver).values()) + accepted_fraction * sum(
        v[0] for v in linearize_flops(pb, solver).values()
    )
    return {
        "solver": solver,
        "s_per_iter": sum(pieces.values()),
        "gflop_per_iter": flops / 1e9,
        "accepted_fraction": accepted_fraction,
        "pieces": pieces,
        "rates_gflop_per_s": {k: rates[k] for k in ("mm", "chol", "chol_solve", "lu")},
        "mm_shape": rates["mm_shape"],
    }


# --- where an iteration spends its time: the pieces, each compiled alone ---------------------------


def _flops(fn, *args) -> float | None:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def solver_problem(pb: Problem):
    """fbackprop's solver ``Problem`` for ``pb`` (D = I, the defaults) and the prepared targets."""
    loss = fb.losses.get(pb.loss)
    x, y = check_call(pb.net, loss, pb.params, pb.x, pb.y)
    return S.Problem(pb.net, loss, x, y, pb.unravel, False, 1024, 1e-8, 10 * pb.P)


def _value_and_grad(sp, params):
    yhat, cache = fb.forward(sp.net, params, sp.x)
    return fb.backward(sp.net, params, cache, sp.loss.grad(yhat, sp.y))[0]


def profile(pb: Problem, solver: str, rounds: int, mu: float = 1e-3) -> list[dict]:
    """Time (median over rounds, less the dispatch of a call with the same arguments that does nothing)
    and XLA flop count of each piece of one ``dense`` / ``dual`` iteration, each compiled alone at
    ``theta0``: the trial's loss, the linearisation and its parts, the solve and its parts (the
    factorisation, the triangular solves, ``J^T w``).

    Args:
        pb: the problem.
        solver: ``"dense"`` or ``"dual"``.
        rounds: timing rounds.
        mu: the damping of the timed solve.

    Returns:
        Rows ``{"piece", "s", "flops", "gflop_per_s"}``; the first three are the whole linearisation,
        the whole solve and the trial loss (the others are their parts).
    """
    sp = solver_problem(pb)
    theta = pb.theta0
    cost = lambda t: jnp.sum(sp.loss.value(fb.forward(pb.net, pb.unravel(t), sp.x)[0], sp.y))
    if solver == "dual":
        lin = jax.jit(lambda t: D.linearize_dual(sp, t))(theta)
        reduced = isinstance(lin, softmax_dual.SoftmaxDual)
        n = lin.K.shape[0]
        u = jnp.stack([lin.r.reshape(-1), lin.t.reshape(-1)], axis=1) if reduced else lin.u.reshape(-1)
        A = lin.K + mu * jnp.eye(n)
        if not reduced and lin.H is not None:
            A = D._times_H(lin.H, lin.K.reshape(*lin.u.shape, n)).reshape(n, n) + mu * jnp.eye(n)
        pieces = {
            "linearize (dual), whole": (lambda t: D.linearize_dual(sp, t), (theta,)),
            "solve (dual), whole": (lambda l, m: D.solve_dual(sp, l, m), (lin, mu)),
            "trial loss (forward)": (cost, (theta,)),
            "  K = J J^T from the layers": (
                (lambda p, c, S_: pb.net.body.jacobian_gram(p, c, jnp.moveaxis(S_, 2, 0)))
                if reduced
                else (lambda p, c: fb_backprop.jacobian_gram(pb.net, p, sp.x, c)),
                (pb.params, fb.forward(pb.net, pb.params, sp.x)[1]) + ((lin.S,) if reduced else ()),
            ),
            "  forward + gradient (backward)": (lambda p: _value_and_grad(sp, p), (pb.params,)),
        }
        if reduced or lin.H is None:
            L = jax.lax.linalg.cholesky(A.T, symmetrize_input=False)
            pieces["  Cholesky of " + ("S^T K S" if reduced else "K") + " + mu I"] = (
                lambda A: jax.lax.linalg.cholesky(A.T, symmetrize_input=False),
                (A,),
            )
            pieces["  two triangular solves"] = (
                lambda L, u: jax.scipy.linalg.cho_solve((L, True), u),
                (L, u),
            )
        else:
            pieces["  LU solve of H K + mu I"] = (lambda A, u: jnp.linalg.solve(A, u), (A, u))
        seed = lin.v if reduced else lin.u
        pieces["  J^T w by a backward pass"] = (
            lambda l, w: fb_backprop.backward(sp.net, sp.unflatten(l.theta), l.inputs, w)[0],
            (lin, seed),
        )
    else:
        lin = jax.jit(lambda t: S.linearize_dense(sp, t))(theta)
        Jt, H, u = jax.jit(lambda t: sp.residual_pieces(t, sp.x, sp.y))(theta)
        A = lin.G + mu * jnp.diag(lin.d)
        L = jax.lax.linalg.cholesky(A.T, symmetrize_input=False)
        pieces = {
            "linearize (dense), whole": (lambda t: S.linearize_dense(sp, t), (theta,)),
            "solve (dense), whole": (lambda l, m: S.solve_normal(l, m), (lin, mu)),
            "trial loss (forward)": (cost, (theta,)),
            "  J^T, H, u (jacobian_rows)": (lambda t: sp.residual_pieces(t, sp.x, sp.y), (theta,)),
            "  G = J^T H J, g = J^T u": (S.normal_equations, (Jt, H, u)),
            "  Cholesky of G + mu D": (lambda A: jax.lax.linalg.cholesky(A.T, symmetrize_input=False), (A,)),
            "  two triangular solves": (lambda L, g: jax.scipy.linalg.cho_solve((L, True), g), (L, lin.g)),
        }
    fns, out = {}, []
    for name, (fn, args) in pieces.items():
        compiled = jax.jit(fn)
        nothing = jax.jit(lambda *a: jnp.zeros(()), keep_unused=True)  # the same arguments, no work
        block((compiled(*args), nothing(*args)))
        fns[name] = lambda c=compiled, a=args: c(*a)
        fns[name + " (dispatch)"] = lambda c=nothing, a=args: c(*a)
        out.append({"piece": name, "flops": _flops(fn, *args)})
    times = timed_rounds(fns, rounds, reps=3)
    for row in out:
        dispatch = statistics.median(times[row["piece"] + " (dispatch)"])
        row["s"] = max(statistics.median(times[row["piece"]]) - dispatch, 1e-9)
        row["gflop_per_s"] = row["flops"] / row["s"] / 1e9 if row["flops"] else None
    return out


def loop_overhead(rows: list[dict], s_per_iter: float, accepted_fraction: float) -> float:
    """What the measured s/iter holds beyond its pieces: ``s/iter - (solve + trial loss + accepted
    fraction x linearize)`` (the while loop, the history, the re-linearisation's ``lax.cond``, the
    carried state's copies; negative within the noise)."""
    lin, solve, trial = (r["s"] for r in rows[:3])
    return s_per_iter - (solve + trial + accepted_fraction * lin)
