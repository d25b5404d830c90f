"""``python -m fbackprop.launch``: processes joined by a local coordinator, their output prefixed by
rank, a failure or a timeout stopping all of them, and every process reaped."""

import glob
import io
import subprocess
import sys
import textwrap

import pytest

from fbackprop import launch as L

pytestmark = pytest.mark.slow  # each process imports JAX: seconds apiece

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import fbackprop.distributed as D
    rank, n = D.initialize()
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    local = np.full((2 * jax.local_device_count(), 3), float(rank + 1))
    g = jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec("batch")), local)
    print("rows", g.shape[0], "devices", jax.device_count(), "sum", float(jax.jit(jnp.sum)(g)))
    if sys.argv[1:] == ["fail"] and rank == 1:
        sys.exit(3)
    if sys.argv[1:] == ["hang"] and rank == 0:
        time.sleep(600)
    """
)


def _running(path: str) -> list:
    """The live processes whose command line names ``path`` (Linux's /proc)."""
    found = []
    for d in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(d, "rb") as f:
                if path.encode() in f.read():
                    found.append(d)
        except OSError:
            pass
    return found


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "job.py"
    path.write_text(SCRIPT)
    return str(path)


def test_two_processes_of_two_devices_see_one_global_batch(script):
    out = io.StringIO()
    assert L.launch(script, [], processes=2, devices=2, timeout=240, out=out) == 0
    lines = out.getvalue().splitlines()
    for rank in (0, 1):  # rows 4 + 4 of ones and twos over 4 devices: 12 + 24
        assert f"[{rank}] rows 8 devices 4 sum 36.0" in lines


def test_a_failing_process_fails_the_launch_with_its_code(script):
    assert L.launch(script, ["fail"], processes=2, timeout=240, out=io.StringIO()) == 3


def test_a_timeout_stops_and_reaps_every_process(script):
    out = io.StringIO()
    assert L.launch(script, ["hang"], processes=2, timeout=30, out=out) == 124
    assert "timed out after 30 s" in out.getvalue()
    assert _running(script) == []  # both processes are gone, the hung one included


def test_the_command_line_runs_and_prefixes_by_rank(script):
    cmd = [sys.executable, "-m", "fbackprop.launch", "--processes", "2", script]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[0] rows 4 devices 2 sum 18.0" in done.stdout and "[1] rows 4" in done.stdout


def test_bad_counts_are_refused(script):
    with pytest.raises(ValueError, match=r"--processes and --devices-per-process must be >= 1; got 0 and 1"):
        L.launch(script, [], processes=0)
    with pytest.raises(FileNotFoundError, match="no script"):
        L.launch("/no/such/script.py", [])
