"""Several processes, one batch: every batch-wide quantity over ``fb.distributed.global_batch`` of
2 processes x 2 devices equals the one-process result over the same rows (float64), and bad input
fails on every process alike. The job is ``tests/multiprocess_job.py``, run once under the launcher."""

import io
import os
import re

import numpy as np
import pytest

import fbackprop as fb
from fbackprop import launch as L

JOB = os.path.join(os.path.dirname(__file__), "multiprocess_job.py")
SAME = [
    "train-batch", "train-minibatch", "lm-cross-entropy", "hvp", "hvp-backprop", "ggn_vp", "fisher_vp",
    "fisher_vp-mc", "hessian_diag", "ggn_diag", "kfac_factors", "kfac_factors-ce", "lanczos", "hutchinson",
]  # fmt: skip


@pytest.fixture(scope="module")
def lines():
    """``{rank: {name: the rest of its line}}`` from one run of the job (about 90 s on 2 cores)."""
    out = io.StringIO()
    code = L.launch(JOB, [], processes=2, devices=2, timeout=480, out=out)
    assert code == 0, out.getvalue()[-3000:]
    found = {0: {}, 1: {}}
    for line in out.getvalue().splitlines():
        m = re.match(r"\[(\d)\] (\S+) (.*)$", line)
        if m:
            found[int(m.group(1))][m.group(2)] = m.group(3)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("name", SAME)
def test_each_quantity_equals_one_process(lines, rank, name):
    assert float(lines[rank][name].split()[0]) <= 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("solver", ["dense", "accumulate", "cg", "dual"])
def test_levenberg_marquardt_takes_the_same_steps(lines, rank, solver):
    m = re.match(r"(\S+) params (\S+) same (\S+) iterations (\d+)", lines[rank][f"lm-{solver}"])
    assert m, lines[rank][f"lm-{solver}"]
    history, params, same, iterations = float(m.group(1)), float(m.group(2)), m.group(3), int(m.group(4))
    assert same == "True" and iterations == 8  # the same status, iterations and accepted steps
    # Gauss-Newton's undamped solve has cond(G) ~ 1e8 here: rounding in the sums moves its step ~1e-8
    tol = 1e-6 if solver == "gauss_newton" else 1e-12
    assert history <= tol and params <= 100 * tol


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_bad_input_fails_on_every_process(lines, rank):
    assert lines[rank]["uneven"].startswith("every process must pass the same number of rows")
    assert "y holds 1 non-finite value" in lines[rank]["nan"]


def test_one_process_global_batch_is_the_rows():
    x, y = fb.distributed.global_batch(np.arange(8.0).reshape(4, 2), np.ones((4, 1)))
    np.testing.assert_array_equal(np.asarray(x), np.arange(8.0).reshape(4, 2))
    assert y.shape == (4, 1)


def test_global_batch_wants_one_row_count():
    with pytest.raises(ValueError, match=r"must share their number of rows; got shapes \(4, 2\), \(3, 1\)"):
        fb.distributed.global_batch(np.ones((4, 2)), np.ones((3, 1)))


@pytest.mark.parametrize(
    "env, several",
    [
        ({}, False),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8"}, False),  # an salloc shell or sbatch script: one process
        ({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "8", "SLURM_STEP_NODELIST": "n[1-2]"}, True),  # srun
        ({"SLURM_STEP_NUM_TASKS": "1", "SLURM_STEP_NODELIST": "n1"}, False),  # srun of one task
        ({"OMPI_COMM_WORLD_SIZE": "4"}, True),
        ({"OMPI_COMM_WORLD_SIZE": "1"}, False),
        ({"TPU_WORKER_HOSTNAMES": "h0,h1"}, True),
    ],
)
def test_a_scheduler_is_joined_only_when_it_started_several_processes(monkeypatch, env, several):
    for name in [*fb.distributed.CLUSTER_VARIABLES, "SLURM_STEP_NODELIST", "TPU_WORKER_HOSTNAMES"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert fb.distributed._scheduled() is several
