"""Start a script as several processes on this machine, joined by JAX's distributed runtime.

    python -m fbackprop.launch --processes 2 [--devices-per-process 2] [--timeout 600] SCRIPT [args...]

Each process runs ``SCRIPT`` with the environment ``fb.distributed.initialize()`` reads (the
coordinator's address on localhost, the process count and this process's id), so the script calls
``fb.distributed.initialize()`` first and is then one process of a multi-controller JAX program
(collectives over gloo on the CPU). Every line a process prints is streamed with its rank
(``[1] ...``). The launcher exits with the first failing process's code (the others are stopped),
with 124 when ``--timeout`` passes, and reaps every process whatever happens.

On a cluster the same script runs under the scheduler instead (one process per host or per GPU:
``srun python SCRIPT``), where ``jax.distributed.initialize()`` reads the scheduler's environment
(SLURM and others); ``fb.distributed.initialize()`` calls it when the launcher's variables are absent.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .distributed import ENV_COORDINATOR, ENV_ID, ENV_PROCESSES


def free_port() -> int:
    """A TCP port free on localhost now (for the coordinator).

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(rank: int, processes: int, port: int, devices: int, base: dict | None = None) -> dict:
    """The environment of process ``rank``.

    Args:
        rank: the process id, ``0 <= rank < processes``.
        processes: how many processes.
        port: the coordinator's port on 127.0.0.1.
        devices: host (CPU) devices per process (``--xla_force_host_platform_device_count``).
        base: the environment to start from (default ``os.environ``).

    Returns:
        A dict for ``subprocess.Popen(env=...)``.
    """
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env.update(
        {
            ENV_COORDINATOR: f"127.0.0.1:{port}",
            ENV_PROCESSES: str(processes),
            ENV_ID: str(rank),
            "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
            "JAX_PLATFORMS": env.get("JAX_PLATFORMS", "cpu"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _stream(rank: int, pipe, out) -> None:
    for line in iter(pipe.readline, ""):
        out.write(f"[{rank}] {line}")
        out.flush()
    pipe.close()


def launch(
    script: str, args: list, processes: int = 2, devices: int = 1, timeout: float = 600.0, out=None
) -> int:
    """Run ``script args`` as ``processes`` processes joined by a local coordinator; wait for all.

    Args:
        script: the Python script's path.
        args: its arguments.
        processes: how many processes, >= 1.
        devices: CPU devices per process, >= 1.
        timeout: seconds before every process is stopped (exit code 124).
        out: where the prefixed lines go (default ``sys.stdout``).

    Returns:
        0 when every process succeeded, else the first failure's exit code (124 on timeout).
    """
    if processes < 1 or devices < 1:
        raise ValueError(f"--processes and --devices-per-process must be >= 1; got {processes} and {devices}")
    if not os.path.isfile(script):
        raise FileNotFoundError(f"no script {script!r} to launch")
    out = sys.stdout if out is None else out
    port = free_port()
    procs, threads = [], []
    try:
        for rank in range(processes):
            p = subprocess.Popen(
                [sys.executable, script, *args],
                env=process_env(rank, processes, port, devices),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group: stopped with everything it started
            )
            procs.append(p)
            t = threading.Thread(target=_stream, args=(rank, p.stdout, out), daemon=True)
            t.start()
            threads.append(t)
        deadline = time.monotonic() + timeout
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                return failed[0]
            if all(c == 0 for c in codes):
                return 0
            if time.monotonic() > deadline:
                out.write(f"fbackprop.launch: timed out after {timeout:g} s; stopping every process\n")
                return 124
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in procs:
            p.wait()
        for t in threads:
            t.join(timeout=5)


def main(argv=None) -> int:
    """The command line (module docstring).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m fbackprop.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="how many processes (default 2)")
    parser.add_argument("--devices-per-process", type=int, default=1, help="CPU devices each (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before all are stopped")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    a = parser.parse_args(argv)
    return launch(a.script, a.args, a.processes, a.devices_per_process, a.timeout)


if __name__ == "__main__":
    sys.exit(main())
