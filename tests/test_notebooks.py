"""Every notebook in notebooks/ runs top to bottom without a cell error, in quick mode.

Each notebook is executed with nbclient in a fresh IPython kernel running *this* interpreter
(``sys.executable``, so the kernel sees the same environment and the same fbackprop as the test
run, whatever kernelspecs are installed elsewhere), with ``FBACKPROP_QUICK=1`` (fewer repeats
and epochs), from the notebooks folder. The kernel runs under the compiler flags a user's Jupyter
has: ``XLA_FLAGS`` (which tests/conftest.py sets for the suite's speed) is removed from its
environment. Each notebook runs once per seed of ``FBACKPROP_SEEDS`` (default ``0``; the notebooks
read their seed from ``FBACKPROP_SEED``), so ``FBACKPROP_SEEDS=0,1,2,3,4`` checks every claim a
notebook asserts over five initialisations. The stored copies are also checked: executed, free of
errors and of absolute paths, and still making the calls they exist to show.
"""

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip(
    "nbformat", reason="notebook tests need the dev extras: pip install -e '.[dev]'"
)
nbclient = pytest.importorskip(
    "nbclient", reason="notebook tests need the dev extras: pip install -e '.[dev]'"
)
ipykernel_spec = pytest.importorskip(
    "ipykernel.kernelspec", reason="notebook tests need ipykernel: pip install -e '.[dev]'"
)
from jupyter_client import AsyncKernelManager  # noqa: E402  (installed with nbclient)
from jupyter_client.kernelspec import KernelSpec  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT_S = 300

#: Calls a notebook must keep making, or it has lost its point.
KEY_CALLS = {
    "01_manual_vs_autodiff.ipynb": (
        "fb.backprop(",
        "fb.autodiff(",
        "fb.compare(",
        "fb.backprop_trace(",
        "fb.train(",
        "fb.forward_mode(",
        "fb.numerical_grad(",
        "fb.per_example_grads(",
    ),
    "02_second_order_optimizers.ipynb": (
        "fb.jacobian(",
        "fb.as_matrix(",
        "fb.compare(",
        "fb.backprop(",
        "fb.ggn(",
        "fb.levenberg_marquardt(",
        "fb.gauss_newton(",
        "fb.newton(",
        "fb.hessian_free(",
        "fb.train(",
    ),
    "03_curvature.ipynb": (
        "fb.hessian_blocks(",
        "fb.hessian_diag(",
        "fb.hessian(",
        "fb.hvp(",
        "fb.lanczos(",
        "fb.ggn(",
        "fb.compare(",
    ),
    "04_architectures.ipynb": (
        "fb.check_layer(",
        "fb.serial(",
        "fb.backprop_trace(",
        "fb.compare(",
        "fb.train(",
        "fb.hvp(",
        "fb.backprop(",
        "fb.autodiff(",
    ),
    "05_kfac.ipynb": (
        "fb.backprop_trace(",
        "fb.kfac_factors(",
        "fb.hessian_blocks(",
        "fb.kfac_inverse_vp(",
        "fb.kfac(",
        "fb.train(",
    ),
}


class ThisPythonKernel(AsyncKernelManager):
    """A kernel manager whose kernel is always ``sys.executable -m ipykernel_launcher``.

    Looking ``python3`` up among the installed kernelspecs could find one in the user's Jupyter
    folder that points at another Python; ipykernel's own spec dictionary uses this interpreter.
    """

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(**ipykernel_spec.get_kernel_dict())


def code_source(nb) -> str:
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


def test_notebooks_found():
    assert PATHS, f"no notebooks in {NOTEBOOKS}"
    assert set(KEY_CALLS) <= {p.name for p in PATHS}, "a notebook listed in KEY_CALLS is missing"


QUICK_SUITE = {"01_manual_vs_autodiff.ipynb"}  # the others run under make test-slow (the slow marker)
RUNS = [pytest.param(p, id=p.name, marks=() if p.name in QUICK_SUITE else pytest.mark.slow) for p in PATHS]


@pytest.mark.parametrize("path", RUNS)
def test_notebook_runs(path, seed, monkeypatch):  # seed: one of FBACKPROP_SEEDS (tests/conftest.py)
    # the kernel inherits this process's environment: quick mode, the seed, and a user's compiler flags
    monkeypatch.setenv("FBACKPROP_QUICK", "1")
    monkeypatch.setenv("FBACKPROP_SEED", str(seed))
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    nb = nbformat.read(path, as_version=4)
    # one cell appended to the run copy: which interpreter did the kernel run?
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=ThisPythonKernel,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        allow_errors=False,
        record_timing=False,
        coalesce_streams=True,
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, naming the cell and the traceback, on any error
    kernel_python = "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()
    assert os.path.abspath(kernel_python) == os.path.abspath(sys.executable)
    errors = [
        o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"
    ]
    assert not errors


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_stored_notebook_is_clean(path):
    """The committed copy shows its results: every code cell executed in order, no error, no
    absolute path of the machine that ran it, and the calls it exists to show."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name}: store it executed top to bottom in a fresh kernel"
    )
    outputs = [o for cell in code for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name} was stored with an error"
    text = path.read_text()
    for fragment in ("/tmp/", "/home/", "/work/", "/Users/", "site-packages"):
        assert fragment not in text, f"{path.name} contains the machine-specific path {fragment!r}"
    missing = [call for call in KEY_CALLS.get(path.name, ()) if call not in code_source(nb)]
    assert not missing, f"{path.name} no longer calls {missing}"
