"""The solvers ``bench_lm.py`` runs side by side: fbackprop's ``levenberg_marquardt`` and the libraries
it is compared with (scipy's MINPACK, optimistix, jaxopt), each behind one ``Entry`` interface, on
the benchmark's problems (``lm_problems.py``). How each library's iterations and time to target are
counted is in ``bench_lm.py``'s docstring."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from lm_problems import TARGET, Problem, n_residuals, residual_fn
from timing import block

import fbackprop as fb

jax.config.update("jax_enable_x64", True)


FD_MAX_P = 200  # scipy with its own finite differences up to this P
#: Truncated CG, an inexact Newton step per trial (``fb.optim.CG``'s docstring): relative residual 1e-3.
INEXACT_CG = fb.optim.CG(tol=1e-3)
TIGHT = 1e-12
SLOW_S = 20.0  # entries whose first call takes longer are timed in one round


# --- one entry per solver configuration ------------------------------------------------------


class Entry:
    """A solver configuration. ``prepare()`` makes the first call of the time-to-target program (timed:
    ``first_s``; the long-run program where the target is out of reach, ``first_is_long``) and finds the
    trials to the target; then zero-arg ``to_target()`` and ``long()`` are timed in rounds, and
    ``digest(long())`` (untimed) gives ``(theta, iters)``."""

    library = ""
    reached_iters: int | None = None  # trials to the target, as the library counts them
    curve: list | None = None  # SSE per iteration where the library exposes it
    first_s = float("nan")
    first_is_long = False
    accepted_fraction: float | None = None  # of the long run's trials (fbackprop)
    resolved: str | None = None  # fbackprop: the solver "auto" resolved to
    default = False
    note = ""

    def __init__(self, pb: Problem, variant: str, target: float):
        self.pb, self.variant, self.target = pb, variant, target
        self.sse = jax.jit(lambda t: jnp.sum(residual_fn(pb)(t) ** 2))

    @property
    def name(self) -> str:
        return f"{self.library}: {self.variant}"

    def _first_call(self, fn):
        t0 = time.perf_counter()
        out = block(fn())
        self.first_s = time.perf_counter() - t0
        return out


def auto(pb) -> str:
    """What ``solver="auto"`` resolves to on this problem (as ``fb.levenberg_marquardt`` decides it)."""
    gram = fb.optim.solves.dual_gram_flops(pb.net, pb.M, False)
    return fb.optim.auto_solver(pb.M, pb.P, pb.x.dtype.itemsize, gram)


class FbEntry(Entry):
    library = "fbackprop"

    def __init__(self, pb, variant, target, solver, damping, line_search=False):
        super().__init__(pb, variant, target)
        self.kw = dict(
            loss=pb.loss, solver=solver, damping=damping, max_steps=pb.budget, line_search=line_search
        )
        self.default = solver == "auto" and damping == "marquardt" and not line_search
        self.resolved = auto(pb) if solver == "auto" else getattr(solver, "name", solver)
        self.goal = target / (2 * pb.x.shape[0])  # fbackprop's C = SSE / (2 N)
        # jitted whole, as the other libraries are, and like theirs the timed program returns the flat
        # solution and its trial count; the history (curve, accepted fraction) comes from a separate,
        # untimed run of the full result. Every output is a buffer the runtime hands back (about 10-20 us
        # apiece on this machine): the full LMResult has 12 on parity3, which the others do not return.
        fit = lambda params, goal: fb.levenberg_marquardt(pb.net, params, pb.x, pb.y, goal=goal, **self.kw)
        self._full = jax.jit(fit)
        self._run = jax.jit(
            lambda params, goal: (lambda r: (ravel_pytree(r.params)[0], r.iterations))(fit(params, goal))
        )

    def run(self, goal=0.0):
        return self._run(self.pb.params, goal)

    def prepare(self):
        theta, k = self._first_call(self.to_target)  # the long run's program too: goal is traced
        if float(self.sse(theta)) <= self.target:
            self.reached_iters = int(k)
        else:
            self.first_is_long = True
        self._record = block(self._full(self.pb.params, 0.0))  # the recording run, untimed

    def to_target(self):
        return self.run(self.goal)

    def long(self):
        return self.run()

    def digest(self, out):
        r, (theta, k) = self._record, out
        self.curve = (2 * self.pb.x.shape[0] * np.asarray(r.history.loss[: int(k) + 1])).tolist()
        self.accepted_fraction = float(np.mean(np.asarray(r.history.accepted[1 : int(k) + 1])))
        self.note = r.message.split(" after")[0]
        return theta, int(k)


class _Reached(Exception):
    pass


class ScipyEntry(Entry):
    library = "scipy"

    def __init__(self, pb, variant, target, finite_differences: bool):
        super().__init__(pb, variant, target)
        self.fd = finite_differences
        R = n_residuals(pb)
        pad = max(pb.P - R, 0)  # MINPACK needs M >= P: zero rows change nothing
        res = residual_fn(pb)
        jac = jax.jacrev(res) if R < pb.P else jax.jacfwd(res)
        self._res = jax.jit(lambda t: jnp.concatenate([res(t), jnp.zeros(pad, t.dtype)]))
        self._jac = jax.jit(lambda t: jnp.concatenate([jac(t), jnp.zeros((pad, pb.P), t.dtype)]))
        self.padding = f"{pad} zero residuals; " if pad else ""

    def _solve(self, stop_at_target: bool, record: bool):
        """One ``least_squares`` call: ``(OptimizeResult or None when stopped at the target, trials, curve)``.
        A trial is an evaluation that moves more than one coordinate from the last trial point (one
        coordinate: a difference quotient; none: a repeat)."""
        import scipy.optimize

        state = {"last": None, "trials": -1, "curve": []}

        def fun(theta):
            r = np.asarray(self._res(theta))
            last = state["last"]
            if last is None or np.count_nonzero(theta != last) > 1:
                state["last"], state["trials"] = theta.copy(), state["trials"] + 1
                sse = float(r @ r)
                if record:
                    state["curve"].append(sse)
                if stop_at_target and sse <= self.target:
                    raise _Reached(state["trials"])
            return r

        jac = "2-point" if self.fd else (lambda theta: np.asarray(self._jac(theta)))
        try:
            sol = scipy.optimize.least_squares(
                fun,
                np.asarray(self.pb.theta0),
                jac=jac,
                method="lm",
                ftol=1e-15,
                xtol=1e-15,
                gtol=1e-15,
                max_nfev=self.pb.budget + 1,
            )
        except _Reached as hit:
            return None, int(hit.args[0]), state["curve"]
        return sol, state["trials"], state["curve"]

    def prepare(self):
        sol, k, _ = self._first_call(lambda: self._solve(True, False))
        if sol is None:
            self.reached_iters = k
        else:
            self.first_is_long = True

    def to_target(self):
        return self._solve(True, False)[1]

    def long(self):
        return self._solve(False, True)

    def digest(self, out):
        sol, k, self.curve = out
        self.note = f"{self.padding}MINPACK status {sol.status}"
        return jnp.asarray(sol.x), k


class OptxEntry(Entry):
    library = "optimistix"

    def __init__(self, pb, variant, target, linear_solver):
        super().__init__(pb, variant, target)
        self.linear_solver = linear_solver
        self.options = {"jac": "bwd" if n_residuals(pb) < pb.P else "fwd"}

    def _program(self, max_steps, verbose=False):
        import optimistix as optx

        solver = optx.LevenbergMarquardt(TIGHT, TIGHT, linear_solver=self.linear_solver, verbose=verbose)
        res = residual_fn(self.pb)
        return jax.jit(
            lambda t: (lambda s: (s.value, s.stats["num_steps"]))(
                optx.least_squares(res, solver, t, max_steps=max_steps, throw=False, options=self.options)
            )
        )

    def prepare(self):
        losses = {}

        def record(step, loss):  # the accepted loss entering step `step`
            losses[int(step)] = float(loss)

        def verbose(**kw):
            jax.debug.callback(record, kw["num_steps"][1], kw["loss_last_accepted_step"][1], ordered=True)

        block(self._program(self.pb.budget, verbose)(self.pb.theta0))  # the recording run, untimed
        hits = [k for k, l in sorted(losses.items()) if k >= 1 and 2 * l <= self.target]  # loss = SSE / 2
        self._long = self._program(self.pb.budget)
        for k in range(hits[0], hits[0] + 3) if hits else ():  # check the timed program reaches the target
            self._target = self._program(k)
            theta, steps = self._first_call(self.to_target)
            if float(self.sse(theta)) <= self.target:
                self.reached_iters = int(steps)
                break
        if self.reached_iters is None:
            self._first_call(self.long)
            self.first_is_long = True
        else:  # compiled ahead, so the timed long runs hold no compile
            self._long = self._long.lower(self.pb.theta0).compile()

    def to_target(self):
        return self._target(self.pb.theta0)

    def long(self):
        return self._long(self.pb.theta0)

    def digest(self, out):
        return out[0], int(out[1])


class JaxoptEntry(Entry):
    library = "jaxopt"

    def __init__(self, pb, variant, target, **solver_kw):
        super().__init__(pb, variant, target)
        import jaxopt

        res = residual_fn(pb)
        make = lambda k: jaxopt.LevenbergMarquardt(res, maxiter=k, tol=TIGHT, **solver_kw)
        self._run = jax.jit(lambda t, k: (lambda o: (o.params, o.state.iter_num))(make(k).run(t)))
        solver = make(pb.budget)

        def record(theta):  # run() is init_state, then update until maxiter
            def body(carry, _):
                params, state = solver.update(*carry)
                return (params, state), 2 * state.value  # jaxopt's value is SSE / 2

            return jax.lax.scan(body, (theta, solver.init_state(theta)), None, length=pb.budget)[1]

        self._record = jax.jit(record)

    def prepare(self):
        curve = np.asarray(self._record(self.pb.theta0))  # the recording run, untimed
        hits = np.nonzero(curve <= self.target)[0]
        self.k_star = int(hits[0]) + 1 if hits.size else None
        if self.k_star is None:
            self._first_call(self.long)
            self.first_is_long = True
            return
        theta, k = self._first_call(self.to_target)
        if float(self.sse(theta)) <= self.target:
            self.reached_iters = int(k)

    def to_target(self):
        return self._run(self.pb.theta0, self.k_star)

    def long(self):
        return self._run(self.pb.theta0, self.pb.budget)

    def digest(self, out):
        return out[0], int(out[1])


def _label(solver) -> str:
    """A solver's name in the table: the string, or a solve part's name with its tolerance."""
    return solver if isinstance(solver, str) else f"{solver.name} tol {solver.tol:g}"


def _key(e: FbEntry) -> tuple:
    """What makes two fbackprop rows the same run: the solver (as ``auto`` resolves it, or the solve
    part with its options), the damping rule and the line search."""
    solver = e.kw["solver"]
    return (e.resolved if isinstance(solver, str) else solver, e.kw["damping"], e.kw["line_search"])


def entries_for(pb: Problem, quick: bool, libraries: dict) -> list[Entry]:
    target = TARGET * float(jnp.sum(residual_fn(pb)(pb.theta0) ** 2))
    out, seen = [], set()
    solvers = (
        ["dense"]
        + (["dual"] if pb.P >= 500 else [])
        + ["auto"]
        + (["accumulate", "cg"] if pb.name == "peaks" else [])
    )
    variants = (
        [("auto", "marquardt", False), ("dense", "nielsen", False), ("auto", "nielsen", True)]
        if quick
        else [
            (solver, damping, ls)
            for solver in solvers
            for damping in ("marquardt", "nielsen")
            for ls in ((False,) if solver in ("accumulate", "cg") else (False, True))
        ]
        + ([(INEXACT_CG, damping, True) for damping in ("marquardt", "nielsen")] if pb.P >= 500 else [])
    )
    for solver, damping, ls in variants:
        label = f"{solver}→{auto(pb)}" if solver == "auto" else _label(solver)
        search = " + line search" if ls else ""
        e = FbEntry(pb, f"{label} {damping}{search}", target, solver, damping, ls)
        if _key(e) in seen:  # auto resolved to a solver already listed
            same = next(x for x in out if _key(x) == _key(e))
            same.default = same.default or e.default
            same.variant = f"{e.resolved} (=auto) {damping}{search}"
            continue
        seen.add(_key(e))
        out.append(e)
    if quick and pb.name == "peaks":
        return out
    if "scipy" in libraries:
        out.append(ScipyEntry(pb, "lm, jax Jacobian", target, False))
        if pb.P <= FD_MAX_P:
            out.append(ScipyEntry(pb, "lm, finite differences", target, True))
    if "optimistix" in libraries:
        import lineax as lx

        out.append(OptxEntry(pb, "LM, QR", target, lx.QR()))
        if not quick:
            out.append(OptxEntry(pb, "LM, Normal(Cholesky)", target, lx.Normal(lx.Cholesky())))
    if "jaxopt" in libraries:
        out.append(JaxoptEntry(pb, "LM, default (CG)", target))
        if not quick:
            out.append(
                JaxoptEntry(
                    pb, "LM, cholesky, materialized J", target, solver="cholesky", materialize_jac=True
                )
            )
    return out


def available_libraries() -> dict:
    """The optional comparison libraries that import: ``{name: version}``."""
    from importlib import import_module, metadata

    out = {}
    for name in ("scipy", "optimistix", "jaxopt"):
        try:
            import_module(name)
        except ImportError:
            continue
        out[name] = metadata.version(name)
    return out
