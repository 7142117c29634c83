"""One run at a time per Dagster instance, in arrival order, across processes on one machine.

``run_turn(folder)`` waits for this process's turn and holds it for the ``with`` block. Each
waiting process leaves a ticket in ``<folder>/queue/`` named by its arrival time; the process
whose ticket is the oldest of the live ones takes an exclusive ``flock`` on
``<folder>/run.lock`` and runs. A process that dies (even by ``kill -9``) loses the flock with
its life, and its ticket is dropped by the next process that finds its pid gone, so the queue
moves on without anyone cleaning up.

This is the command line's stand-in for the instance's run queue (``max_concurrent_runs: 1`` in
dagster.yaml), which only the Dagster daemon serves: ``segmentation run`` executes its job in
its own process, without the daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

QUEUE_DIR = "queue"
LOCK_FILE = "run.lock"


class RunTurnTimeout(TimeoutError):
    """Raised when the runs ahead did not finish in time."""


def process_token(pid: int) -> str | None:
    """What tells process ``pid`` from a later process that reuses its pid: the boot and the
    process's start time (Linux ``/proc``); None where that is not available."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses; fields after it are plain
    start_ticks = stat.rsplit(")", 1)[1].split()[19]
    return f"{boot}:{start_ticks}"


def process_started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from Linux ``/proc``; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration):
        return None
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return boot + start_ticks / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int, token: str | None = None) -> bool:
    """Whether process ``pid`` still runs on this machine (and, given its ``token``, is the same
    process, not a later one with the same pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if token is None:
        return True
    current = process_token(pid)
    return current is None or current == token


def queue_dir(folder: Path) -> Path:
    """Where the tickets of the runs waiting on ``folder`` are."""
    return folder / QUEUE_DIR


def _ticket_alive(ticket: Path) -> bool:
    try:
        pid, token = ticket.read_text().split()
    except FileNotFoundError:
        return False  # its owner finished while we looked
    except ValueError:
        return False  # not written by run_turn (its tickets appear whole, by a rename)
    return process_alive(int(pid), None if token == "-" else token)


def _ahead(queue: Path, mine: str) -> list[str]:
    """Live tickets older than ``mine``; removes the tickets of dead processes."""
    ahead = []
    for ticket in sorted(queue.iterdir()):
        if ticket.name >= mine or ticket.name.startswith("."):
            continue
        if _ticket_alive(ticket):
            ahead.append(ticket.name)
        else:
            ticket.unlink(missing_ok=True)
    return ahead


@contextlib.contextmanager
def run_turn(
    folder: Path,
    timeout_s: float | None = None,
    on_wait: Callable[[int], None] = lambda n_ahead: None,
    poll_s: float = 0.2,
) -> Iterator[None]:
    """Wait until every run that arrived earlier on ``folder`` has finished; hold the turn.

    ``on_wait(n)`` is called once if ``n`` runs are ahead. Raises :class:`RunTurnTimeout`
    after ``timeout_s`` (None: wait as long as it takes).
    """
    queue = queue_dir(folder)
    queue.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    name = f"{time.time_ns():020d}-{pid:010d}"
    # written aside and renamed in, so a ticket is never seen half-written
    tmp = queue / f".{name}"
    tmp.write_text(f"{pid} {process_token(pid) or '-'}\n")
    ticket = queue / name
    tmp.rename(ticket)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        announced = False
        while True:
            ahead = _ahead(queue, name)
            if not ahead:
                try:
                    # the previous run may still be letting go of it
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
            if not announced and ahead:
                on_wait(len(ahead))
                announced = True
            if deadline is not None and time.monotonic() > deadline:
                raise RunTurnTimeout(
                    f"{len(ahead)} earlier run(s) on {folder} did not finish within "
                    f"{timeout_s:.0f}s"
                )
            time.sleep(poll_s)
        yield
    finally:
        os.close(fd)  # releases the flock
        ticket.unlink(missing_ok=True)
