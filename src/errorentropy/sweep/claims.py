"""Claims on sweep cells: any number of workers share one sweep folder, each cell computed once.

A worker claims a cell before computing it by creating the next attempt file of that cell::

    SWEEP/claims/<cell_id>/attempt-000001.json   who claimed it (worker, host, pid, boot id, since);
                                                 written whole, then linked into place, never
                                                 changed; its holder keeps an flock on it
    SWEEP/claims/<cell_id>/attempt-000001.beat   the holder's heartbeat (renewed every lease/4
                                                 seconds) and, once it lets go, the outcome:
                                                 done, failed, skipped, superseded, ...

Attempt ``n + 1`` is created with ``os.link`` (``O_EXCL`` where hard links are refused), which
fails for every worker but one, so two workers never both hold one attempt. It may be created
only when attempt ``n`` is over: released by its holder, or its holder dead. A holder is dead

* on the same machine (same kernel boot id) when its flock on the attempt file is gone (the
  kernel drops it the moment the process dies, SIGKILL included), where the holder found the
  folder to honour flock (it checks, with two open files, when it first claims);
* anywhere, when its heartbeat has not changed while this reader watched it for a whole lease
  (``--lease`` or ``ERRORENTROPY_LEASE_S``; default 300 s), timed on the reader's own monotonic
  clock: a lost node, or a file system whose locks do not reach across machines (NFS without
  lockd, Lustre with ``localflock``). The holder's clock is never compared with the reader's, so
  clocks that disagree take no cell from a living worker. A holder on the reader's machine whose
  flock is held is alive however long it has been paused.

A holder whose heartbeats stalled for longer than the lease while it lived (a frozen NFS mount,
a paused process on another machine) finds attempt ``n + 1`` present before committing, and
drops its result; the commit itself never replaces a verified cell that another worker put in
place meanwhile (see :func:`errorentropy.sweep.commit.commit_cell`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errorentropy.errors import UserError
from errorentropy.storage import atomic_write_text

CLAIMS_DIR = "claims"
LEASE_ENV = "ERRORENTROPY_LEASE_S"
WORKER_ENV = "ERRORENTROPY_WORKER"  # a label for this worker (``--workers`` sets w0, w1, ...)
DEFAULT_LEASE_S = 300.0
# Outcomes after which a cell needs nobody: it was computed, or it failed.
FINAL = ("done", "failed")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: leases only
    fcntl = None  # type: ignore[assignment]


def lease_seconds(value: float | None = None) -> float:
    """The lease length: ``value``, else ``$ERRORENTROPY_LEASE_S``, else 300 s."""
    if value is None:
        raw = os.environ.get(LEASE_ENV)
        if not raw:
            return DEFAULT_LEASE_S
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"{LEASE_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise UserError(f"the lease must be a positive number of seconds, got {value}")
    return float(value)


@dataclass(frozen=True)
class Worker:
    """This process as a claimant: machine, kernel boot, process id and a random token."""

    host: str
    boot: str
    pid: int
    token: str
    label: str

    @property
    def name(self) -> str:
        """The worker's id in claims and cells: ``host:pid:token``."""
        return f"{self.host}:{self.pid}:{self.token}"


_WORKER: Worker | None = None


def this_worker() -> Worker:
    """This process's worker identity (a forked child gets its own)."""
    global _WORKER
    if _WORKER is None or _WORKER.pid != os.getpid():
        slurm = [os.environ.get(k, "") for k in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")]
        label = os.environ.get(WORKER_ENV) or ("slurm " + "_".join(slurm) if all(slurm) else "")
        _WORKER = Worker(socket.gethostname(), _boot_id(), os.getpid(), uuid.uuid4().hex[:8], label)
    return _WORKER


def _boot_id() -> str:
    """This kernel's boot id: equal for two processes exactly when they share a machine."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """What a cell's latest attempt file says, with its heartbeat."""

    cell_id: str
    attempt: int
    worker: str
    label: str
    host: str
    pid: int
    boot: str
    since: float
    beat: float
    flock: bool
    outcome: str | None  # None while held
    path: Path

    @property
    def who(self) -> str:
        """``host/pid`` (and the worker's label), for people."""
        return f"{self.host}/{self.pid}" + (f" ({self.label})" if self.label else "")


# Attempt files held by this process (path -> claim), whichever board claimed them.
_HELD: dict[Path, Claim] = {}
_HELD_PID = os.getpid()
_HELD_LOCK = threading.Lock()


def _held() -> dict[Path, Claim]:
    global _HELD, _HELD_PID
    if _HELD_PID != os.getpid():  # a forked child holds nothing of its parent's
        _HELD, _HELD_PID = {}, os.getpid()
    return _HELD


class Claim:
    """A cell this process holds: renewed by the board's heartbeat until released."""

    def __init__(self, board: ClaimBoard, cell_id: str, attempt: int, handle: Any) -> None:
        self.board = board
        self.cell_id = cell_id
        self.attempt = attempt
        self.path = board.attempt_path(cell_id, attempt)
        self._handle = handle  # keeps the flock for as long as the claim lives
        self._lock = threading.Lock()  # a late heartbeat never overwrites the outcome
        self.outcome: str | None = None

    def renew(self, outcome: str | None = None) -> None:
        """Write the heartbeat (and, on release, the outcome); nothing once released."""
        with self._lock:
            if self.outcome is not None:
                return
            body = {"beat": time.time(), "outcome": outcome}
            atomic_write_text(self.path.with_suffix(".beat"), json.dumps(body) + "\n")
            self.outcome = outcome

    def superseded(self) -> bool:
        """Whether another worker took this cell over (its lease ran out while this one ran)."""
        nxt = self.board.attempt_path(self.cell_id, self.attempt + 1)
        return nxt.exists() or nxt.name in os.listdir(nxt.parent)

    def release(self, outcome: str) -> None:
        """Let go: record the outcome, drop the lock.

        The outcome is a courtesy to other readers (without it they treat the attempt as a dead
        holder's), so failing to write it loses nothing: the usual cause is a worker that took
        this cell over while this one was paused and deleted its half-written heartbeat file.
        """
        with _HELD_LOCK:
            _held().pop(self.path, None)
        try:
            self.renew(outcome)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self._handle.close()


class ClaimBoard:
    """The claims of one sweep folder, as this process sees and makes them."""

    def __init__(
        self,
        sweep_dir: Path | str,
        lease_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(sweep_dir) / CLAIMS_DIR
        # This reader's clock (monotonic): how long it has watched a heartbeat stand still.
        self.clock = clock
        self._watched: dict[Path, tuple[float, float]] = {}  # attempt -> (its beat, first seen)
        self.lease_s = lease_seconds(lease_s)
        self.beat_s = self.lease_s / 4
        self.poll_s = min(self.lease_s / 4, 10.0)
        self.worker = this_worker()
        self._flock: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attempt_path(self, cell_id: str, attempt: int) -> Path:
        """The file of attempt ``attempt`` on ``cell_id``."""
        return self.root / cell_id / f"attempt-{attempt:06d}.json"

    # ---- reading ---------------------------------------------------------------------------

    def latest(self, cell_id: str) -> Holder | None:
        """The cell's latest attempt, or None when nobody ever claimed it."""
        folder = self.root / cell_id
        try:
            names = os.listdir(folder)
        except OSError:
            return None
        numbers = [_attempt_number(n) for n in names]
        attempt = max((n for n in numbers if n is not None), default=None)
        return None if attempt is None else self._read(cell_id, attempt)

    def _read(self, cell_id: str, attempt: int) -> Holder:
        path = self.attempt_path(cell_id, attempt)
        body = _read_json(path)
        beat = _read_json(path.with_suffix(".beat"))
        if body is None:  # unreadable: judged by the file's age alone
            mtime = _mtime(path)
            body = {"since": mtime, "flock": False}
        since = float(body.get("since") or 0.0)
        return Holder(
            cell_id,
            attempt,
            str(body.get("worker", "?")),
            str(body.get("label", "")),
            str(body.get("host", "?")),
            int(body.get("pid") or 0),
            str(body.get("boot", "")),
            since,
            float(beat.get("beat") or since) if beat else since,
            bool(body.get("flock")),
            beat.get("outcome") if beat else None,
            path,
        )

    def alive(self, holder: Holder) -> bool:
        """Whether ``holder`` still holds its cell (see the module docstring)."""
        if holder.outcome is not None:
            return False
        if holder.worker == self.worker.name:
            return holder.path in _held()
        if holder.flock and holder.boot and holder.boot == self.worker.boot:
            probe = _probe(holder.path)
            if probe != "unknown":  # the kernel knows: a held lock is a living process
                return probe == "held"
        return self._beating(holder)

    def _beating(self, holder: Holder) -> bool:
        """False once this reader has seen ``holder``'s heartbeat unchanged for a whole lease on
        its own clock (the holder's timestamps only tell whether the beat changed)."""
        now = self.clock()
        seen = self._watched.get(holder.path)
        if seen is None or seen[0] != holder.beat:
            self._watched[holder.path] = (holder.beat, now)
            return True
        return now - seen[1] <= self.lease_s

    # ---- claiming --------------------------------------------------------------------------

    def try_claim(self, cell_id: str) -> Claim | None:
        """Claim ``cell_id`` if nobody living holds it; None if someone does, or won the race."""
        folder = self.root / cell_id
        folder.mkdir(parents=True, exist_ok=True)
        latest = self.latest(cell_id)
        if latest is not None and self.alive(latest):
            return None
        attempt = (latest.attempt if latest else 0) + 1
        handle = self._create(cell_id, attempt)
        if handle is None:
            return None
        claim = Claim(self, cell_id, attempt, handle)
        try:
            claim.renew()
        except OSError:  # paused here, taken over, its half-written heartbeat deleted: lost
            if not claim.superseded():
                handle.close()
                raise
            claim.release("superseded")
            return None
        with _HELD_LOCK:
            _held()[claim.path] = claim
        _clean_older(folder, attempt)
        self._start_heartbeat()
        return claim

    def _create(self, cell_id: str, attempt: int) -> Any:
        """The open, locked attempt file, created whole; None when another worker made it."""
        final = self.attempt_path(cell_id, attempt)
        tmp = final.parent / f".{final.name}.{self.worker.token}.tmp"
        w = self.worker
        record = {"worker": w.name, "label": w.label, "host": w.host, "pid": w.pid}
        record.update(boot=w.boot, since=time.time(), flock=self.flock_works())
        handle = open(tmp, "x", encoding="utf-8")
        try:
            _hold_and_write(handle, record)
            try:
                os.link(tmp, final)  # atomic, and fails if the attempt exists (NFS too)
            except OSError as exc:
                if exc.errno != errno.EEXIST:  # no hard links here: exclusive creation instead
                    return self._create_exclusive(final, record, handle)
                if not _linked(tmp, final):  # another worker made it
                    handle.close()
                    return None
            return handle
        except BaseException:  # a failed lock, write or sync: no open file is left behind
            handle.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _create_exclusive(self, final: Path, record: dict[str, Any], old: Any) -> Any:
        old.close()
        try:
            handle = open(final, "x", encoding="utf-8")
        except FileExistsError:
            return None
        try:
            _hold_and_write(handle, record)
        except BaseException:  # the empty attempt file is left to the lease, the handle closed
            handle.close()
            raise
        return handle

    def flock_works(self) -> bool:
        """Whether flock on this folder excludes a second open file of the same process (checked
        once); where it does not (no fcntl, or locks that are per process, as NFS's emulation),
        only the lease tells a dead holder."""
        if self._flock is None:
            self._flock = _flock_excludes(self.root)
        return self._flock

    # ---- heartbeat -------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="claims-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            with _HELD_LOCK:
                mine = [c for c in _held().values() if c.board is self]
            for claim in mine:
                with contextlib.suppress(OSError):  # a full disk for a moment: the next beat
                    claim.renew()

    def close(self, outcome: str = "interrupted") -> None:
        """Release every claim this board still holds (an error or an interrupt ended the work)
        and stop the heartbeat."""
        with _HELD_LOCK:
            mine = [c for c in _held().values() if c.board is self]
        for claim in mine:
            with contextlib.suppress(OSError):
                claim.release(outcome)
        self._stop.set()


def _attempt_number(name: str) -> int | None:
    if name.startswith("attempt-") and name.endswith(".json") and name[8:-5].isdigit():
        return int(name[8:-5])
    return None


def _hold_and_write(handle: Any, record: dict[str, Any]) -> None:
    """Lock a new attempt file (where flock works here) and write its claim record durably."""
    if record["flock"]:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.write(json.dumps(record) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _linked(tmp: Path, final: Path) -> bool:
    """Whether ``final`` is ``tmp`` itself: NFSv3 may answer a retried ``link`` that succeeded
    with EEXIST, and then the temporary file has two names."""
    try:
        mine = os.stat(tmp)
        return mine.st_nlink == 2 and os.path.samestat(mine, os.stat(final))
    except OSError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _probe(path: Path) -> str:
    """``free`` when nobody holds an flock on ``path``, ``held`` when someone does, else
    ``unknown``."""
    if fcntl is None:
        return "unknown"
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return "held"
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return "free"
    except OSError:
        return "unknown"


def _flock_excludes(folder: Path) -> bool:
    """Two open files of one process: does an flock on the first keep the second out?"""
    if fcntl is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".flock-check.{this_worker().token}.{uuid.uuid4().hex[:6]}.tmp"
    try:
        with open(path, "w") as first, open(path, "rb") as second:
            fcntl.flock(first.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                fcntl.flock(second.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _clean_older(folder: Path, attempt: int) -> None:
    """Delete the temporary files that killed holders of earlier attempts left in ``folder``."""
    for name in os.listdir(folder):
        if name.startswith(".attempt-") and name.endswith(".tmp"):
            number = name[9:15]
            if number.isdigit() and int(number) < attempt:
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
