"""Data larger than memory (``fbackprop.streaming``, ``optim/streamed.py``): the data passed in 7
uneven chunks (two distinct sizes, so each per-chunk function compiles twice) give the in-memory
results: every curvature product, dense matrix, diagonal and K-FAC factor to 1e-12, and
Levenberg-Marquardt's accumulate and cg runs the same status, iterations and accepted steps, losses
to 1e-12 relative and params to 1e-10."""

import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb
from fbackprop.streaming import chunk_sum

SIZES = [4, 4, 3, 4, 3, 4, 3]  # 25 rows in 7 chunks of two sizes
N = sum(SIZES)
NET = fb.mlp([2, 4, 2], activation="tanh")
PARAMS = NET.init(jax.random.key(0), jnp.float64)
_rng = np.random.default_rng(0)
X = _rng.normal(size=(N, 2))
Y = np.tanh(X @ _rng.normal(size=(2, 2))) + 0.3 * _rng.normal(size=(N, 2))  # noisy: the loss stays > 0
LABELS = _rng.integers(0, 2, N)
TARGETS = {"squared_error": Y, "cross_entropy": LABELS}
V = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype).reshape(a.shape)), PARAMS)


def _flat(tree):
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def _rel(a, b) -> float:
    a, b = _flat(a), _flat(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _chunks(y):
    return fb.Chunks.of(X, y, sizes=SIZES)


# --- the source ---------------------------------------------------------------------------------
def test_chunks_of_slices_rows_lazily():
    data = _chunks(Y)
    sizes = [xc.shape[0] for xc, _ in data]
    assert sizes == SIZES and [yc.shape[0] for _, yc in data] == SIZES  # re-read: the same chunks
    again = np.concatenate([xc for xc, _ in data])
    assert np.array_equal(again, X)
    assert [xc.shape[0] for xc, _ in fb.Chunks.of(X, Y, 10)] == [10, 10, 5]


def test_a_generator_function_a_list_and_a_chunks_are_all_sources():
    pairs = [(X[:10], Y[:10]), (X[10:], Y[10:])]
    gen = lambda: iter(pairs)  # noqa: E731  (a fresh iterator each call)
    ggn = fb.ggn_vp(NET, "squared_error")
    want = ggn(PARAMS, X, Y, V)
    for source in (fb.Chunks(gen), gen, pairs, fb.Chunks(pairs), fb.Chunks(fb.Chunks(pairs))):
        assert _rel(ggn(PARAMS, source, None, V), want) <= 1e-12


def test_chunk_sum_compiles_once_per_chunk_shape(compiles):
    data, loss = _chunks(Y), fb.losses.get("squared_error")
    fn = jax.jit(lambda p, x, y: jnp.sum(x, axis=0))
    before = compiles()
    total, n = chunk_sum(fn, data, NET, loss, PARAMS, PARAMS, finite=False)
    first = compiles() - before
    assert n == N and np.allclose(total, X.sum(0), rtol=1e-14)
    assert first <= 3  # two chunk shapes, and the adder (once, if no test compiled it before)
    chunk_sum(fn, data, NET, loss, PARAMS, PARAMS, finite=False)
    assert compiles() - before == first  # a second pass compiles nothing


def test_a_source_that_gives_other_rows_on_a_later_pass_is_refused():
    calls = []

    def shrinking():
        calls.append(1)
        stop = N if len(calls) == 1 else N - 3
        return ((X[a : min(a + 5, stop)], Y[a : min(a + 5, stop)]) for a in range(0, stop, 5))

    data, loss = fb.Chunks(shrinking), fb.losses.get("squared_error")
    fn = jax.jit(lambda p, x, y: jnp.sum(x))
    n = chunk_sum(fn, data, NET, loss, PARAMS, PARAMS)[1]
    with pytest.raises(ValueError, match=f"gave {N} rows on an earlier pass and {N - 3} on this one"):
        chunk_sum(fn, data, NET, loss, PARAMS, PARAMS, rows=n)


# --- curvature ----------------------------------------------------------------------------------
CURVATURE = {
    "hvp autodiff": (lambda loss: fb.hvp(NET, loss), True),
    "hvp backprop": (lambda loss: fb.hvp(NET, loss, method="backprop"), True),
    "ggn_vp": (lambda loss: fb.ggn_vp(NET, loss), True),
    "fisher_vp empirical": (lambda loss: fb.fisher_vp(NET, loss), True),
    "hessian": (lambda loss: fb.hessian(NET, loss), False),
    "ggn": (lambda loss: fb.ggn(NET, loss), False),
    "hessian_diag": (lambda loss: fb.hessian_diag(NET, loss), False),
    "ggn_diag chunked": (lambda loss: fb.ggn_diag(NET, loss, chunk_size=2), False),
    "ggn_diag factored": (lambda loss: fb.ggn_diag(NET, loss, factored=True), False),
    "hessian_blocks": (lambda loss: fb.hessian_blocks(NET, loss), False),
    "kfac_factors": (lambda loss: fb.kfac_factors(NET, loss), False),
    "kfac_factors empirical": (lambda loss: fb.kfac_factors(NET, loss, kind="empirical"), False),
}
LOSSES = ["squared_error", pytest.param("cross_entropy", marks=pytest.mark.slow)]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", list(CURVATURE))
def test_curvature_on_chunks_equals_in_memory(name, loss):
    make, takes_v = CURVATURE[name]
    fn, y = make(loss), TARGETS[loss]
    args = (V,) if takes_v else ()
    assert _rel(fn(PARAMS, _chunks(y), None, *args), fn(PARAMS, X, y, *args)) <= 1e-12


def test_a_memmap_file_is_read_through_chunks_of(tmp_path):
    xm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64, shape=X.shape)
    ym = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float64, shape=Y.shape)
    xm[:], ym[:] = X, Y
    xm.flush(), ym.flush()
    del xm, ym
    x, y = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    data = fb.Chunks.of(x, y, sizes=SIZES)
    assert all(isinstance(xc, np.memmap) for xc, _ in data)  # row slices of the file, not copies
    diag = fb.ggn_diag(NET, "squared_error")
    assert _rel(diag(PARAMS, data, None), diag(PARAMS, X, Y)) <= 1e-12


class _Recorder:
    """A source whose chunks are fresh arrays: it records the most rows alive at once."""

    def __init__(self):
        self.alive = self.most = 0

    def _free(self, rows):
        self.alive -= rows

    def __call__(self):
        for a, b in zip(np.cumsum([0] + SIZES[:-1]), np.cumsum(SIZES)):
            xc, yc = X[a:b].copy(), Y[a:b].copy()
            self.alive += b - a
            self.most = max(self.most, self.alive)
            weakref.finalize(xc, self._free, b - a)
            yield xc, yc


def test_a_stream_is_never_held_whole():
    source = _Recorder()
    got = fb.hvp(NET, "squared_error")(PARAMS, fb.Chunks(source), None, V)
    assert _rel(got, fb.hvp(NET, "squared_error")(PARAMS, X, Y, V)) <= 1e-12
    assert 0 < source.most <= 2 * max(SIZES) < N  # at most the chunk in use and the next


# --- Levenberg-Marquardt ------------------------------------------------------------------------
def _same_run(a, b):
    assert int(a.status) == int(b.status) and int(a.iterations) == int(b.iterations)
    assert np.array_equal(np.asarray(a.history.accepted), np.asarray(b.history.accepted), equal_nan=True)
    k = int(a.iterations) + 1
    la, lb = np.asarray(a.history.loss[:k]), np.asarray(b.history.loss[:k])
    assert np.max(np.abs(la - lb) / np.abs(la)) <= 1e-12
    assert np.max(np.abs(_flat(a.params) - _flat(b.params))) <= 1e-10


# Each case over ~5 s on 2 CPU cores: the host loop's first run compiles its ~65 small eager operations.
LM_CASES = [
    pytest.param("squared_error", "accumulate", "identity", marks=pytest.mark.slow),
    pytest.param("squared_error", "accumulate", "marquardt", marks=pytest.mark.slow),
    pytest.param("squared_error", "cg", "identity", marks=pytest.mark.slow),
    pytest.param("squared_error", "cg", "marquardt", marks=pytest.mark.slow),
    pytest.param("cross_entropy", "accumulate", "identity", marks=pytest.mark.slow),
    pytest.param("cross_entropy", "accumulate", "marquardt", marks=pytest.mark.slow),
    pytest.param("cross_entropy", "cg", "identity", marks=pytest.mark.slow),
    pytest.param("cross_entropy", "cg", "marquardt", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("loss, solver, scaling", LM_CASES)
def test_levenberg_marquardt_on_chunks_equals_in_memory(loss, solver, scaling):
    y = TARGETS[loss]
    options = dict(loss=loss, solver=solver, scaling=scaling, max_steps=12, cg_tol=1e-15)
    a = fb.levenberg_marquardt(NET, PARAMS, X, y, **options)
    b = fb.levenberg_marquardt(NET, PARAMS, _chunks(y), None, **options)
    assert int(np.nansum(np.asarray(a.history.accepted[1:]))) >= 3  # a run that moves
    _same_run(a, b)
    assert b.message.startswith(fb.status.MESSAGES[int(a.status)])


@pytest.mark.slow
def test_levenberg_marquardt_on_chunks_with_validation_progress_and_auto():
    xv, yv = X[:6] + 0.1, Y[:6]
    lines_a, lines_b = [], []
    options = dict(max_steps=15, val=(xv, yv), max_fail=2)
    a = fb.levenberg_marquardt(
        NET, PARAMS, X, Y, solver="accumulate", progress=lambda *r: lines_a.append(r), **options
    )
    b = fb.levenberg_marquardt(
        NET, PARAMS, _chunks(Y), None, progress=lambda *r: lines_b.append(r), **options
    )
    _same_run(a, b)  # auto on chunks: accumulate (P = 22)
    finite = np.isfinite(np.asarray(a.history.val_loss))
    assert np.allclose(
        np.asarray(a.history.val_loss)[finite], np.asarray(b.history.val_loss)[finite], rtol=1e-12
    )
    assert len(lines_b) == len(lines_a) == int(a.iterations)
    assert [bool(r[3]) for r in lines_b] == [bool(r[3]) for r in lines_a]


@pytest.mark.slow
def test_levenberg_marquardt_reads_a_memmap_in_chunks(tmp_path):
    np.save(tmp_path / "x.npy", X), np.save(tmp_path / "y.npy", Y)
    x, y = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    options = dict(solver="cg", cg_tol=1e-15, max_steps=8)
    a = fb.levenberg_marquardt(NET, PARAMS, X, Y, **options)
    _same_run(a, fb.levenberg_marquardt(NET, PARAMS, fb.Chunks.of(x, y, 7), None, **options))


# --- several processes --------------------------------------------------------------------------
PROCESS_SCRIPT = """
import sys
import fbackprop.distributed as D
rank, n = D.initialize()
assert n == 2
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import fbackprop as fb
sys.path.insert(0, sys.argv[2])
import test_streaming as T
rows = np.array_split(np.arange(T.N), n)[rank]  # each process streams its own rows, in chunks of 4
data = fb.Chunks.of(T.X[rows], T.Y[rows], 4)
out = {"Gv": T._flat(fb.ggn_vp(T.NET, "squared_error")(T.PARAMS, data, None, T.V)),
       "kfac": T._flat(fb.kfac_factors(T.NET, "squared_error")(T.PARAMS, data, None))}
for solver in ("accumulate", "cg"):
    r = fb.levenberg_marquardt(T.NET, T.PARAMS, data, None, solver=solver, cg_tol=1e-15, max_steps=8)
    out.update({f"{solver}_params": T._flat(r.params), f"{solver}_loss": np.asarray(r.history.loss),
                f"{solver}_accepted": np.asarray(r.history.accepted), f"{solver}_status": int(r.status)})
np.savez(f"{sys.argv[1]}/rank{rank}.npz", **out)
print("done", rank, jax.process_count())
"""


@pytest.mark.slow
def test_two_processes_each_streaming_its_rows_equal_one_process(tmp_path):
    import io
    import os

    from fbackprop import launch as L

    script = tmp_path / "job.py"
    script.write_text(PROCESS_SCRIPT)
    out = io.StringIO()
    code = L.launch(
        str(script), [str(tmp_path), os.path.dirname(__file__)], processes=2, timeout=300, out=out
    )
    assert code == 0, out.getvalue()
    assert "[1] done 1 2" in out.getvalue().splitlines()
    want = {
        "Gv": _flat(fb.ggn_vp(NET, "squared_error")(PARAMS, X, Y, V)),
        "kfac": _flat(fb.kfac_factors(NET, "squared_error")(PARAMS, X, Y)),
    }
    runs = {
        s: fb.levenberg_marquardt(NET, PARAMS, X, Y, solver=s, cg_tol=1e-15, max_steps=8)
        for s in ("accumulate", "cg")
    }
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        for name, w in want.items():
            assert np.max(np.abs(got[name] - w)) / np.max(np.abs(w)) <= 1e-12
        for solver, a in runs.items():
            assert int(got[f"{solver}_status"]) == int(a.status)
            assert np.array_equal(got[f"{solver}_accepted"], np.asarray(a.history.accepted), equal_nan=True)
            la, lb = np.asarray(a.history.loss), got[f"{solver}_loss"]
            finite = np.isfinite(la)
            assert np.array_equal(finite, np.isfinite(lb))
            assert np.max(np.abs(la[finite] - lb[finite]) / la[finite]) <= 1e-12
            assert np.max(np.abs(got[f"{solver}_params"] - _flat(a.params))) <= 1e-10
