"""One writer per run dir: an OS lock on <run_dir>/run.lock, taken when a run starts
(before any task is built) and released when it closes.

The lock is `fcntl.flock` on the file, so the kernel releases it when the process dies
however it dies (SIGKILL, OOM, node reboot). The file also holds a JSON record of the
holder (host, pid, start time, SLURM job), which names it when a second process is
refused, and is emptied on release. A record found non-empty by a process that gets
the lock was left by a process that died without releasing it: it is taken over with a
notice.

Shared file systems: Linux NFS (v3 with lockd, v4) emulates flock with byte-range locks
that every client sees, so two hosts are excluded too. Where flock is local to one host
(NFS mounted with `local_lock=flock|all` or `nolock`, Lustre `localflock`, BeeGFS
without global file locks) two hosts are NOT excluded; a run then reports a record it
took over from another host, which is the sign. Where flock is unavailable (Lustre
without `-o flock` gives ENOSYS) the record alone decides, with a warning: a record of
a live process on this host, or of any process on another host (whose liveness cannot
be checked from here), refuses the run; delete run.lock by hand once that process is
known to be gone. Without flock two processes that start at the same instant may both
pass; with it they cannot.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = "run.lock"
_NO_FLOCK = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}


class RunDirBusy(ValueError):
    """Another live process holds the run dir. A ValueError, so the entry point reports
    it as a bad input (one line, non-zero exit) before any compute."""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22):
    with the pid and the boot id, it tells a process from a later one given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(record: dict) -> bool:
    """Whether the process a record names still runs (on this host)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if record.get("boot_id") and _boot_id() and record["boot_id"] != _boot_id():
        return False                                     # the host rebooted since
    ticks = _start_ticks(pid)
    if ticks is not None:
        return record.get("pid_start") in (None, ticks)  # same pid, same start: same process
    try:
        os.kill(pid, 0)                                  # no /proc: the pid alone
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(record: dict | None) -> str:
    """'pid 123 on host h (started 2025-01-01 12:00:00, SLURM job 42)' for messages."""
    if not record:
        return "a process that has not written its record yet"
    extra = [f"started {record['started']}"] if record.get("started") else []
    if record.get("slurm_job"):
        extra.append(f"SLURM job {record['slurm_job']}")
    return f"pid {record.get('pid')} on host {record.get('host')}" + (f" ({', '.join(extra)})" if extra else "")


class RunLock:
    """The lock of one run dir. `acquire()` raises RunDirBusy naming the holder;
    `release()` empties the record and unlocks. Not re-entrant: a second RunLock on the
    same dir in the same process is refused too."""

    def __init__(self, run_dir: Path, name: str = LOCK_NAME):
        self.path = Path(run_dir) / name
        self.fd: int | None = None
        self.flock = True                 # False where the file system has no flock
        self.record: dict | None = None
        self.took_over: dict | None = None

    def _read(self, fd: int) -> dict | None:
        raw = os.pread(fd, 65536, 0)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"pid": None, "host": "?", "unreadable": raw[:200].decode(errors="replace")}

    def _write(self, fd: int, record: dict | None) -> None:
        os.ftruncate(fd, 0)
        if record is not None:
            os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)

    def _mine(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _start_ticks(os.getpid()),
                "boot_id": _boot_id(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "slurm_job": os.environ.get("SLURM_JOB_ID"), "argv": sys.argv[:20]}

    def _open_locked(self) -> int:
        """An fd of run.lock holding flock; raises RunDirBusy if another holds it."""
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                raise RunDirBusy(self._busy(holder)) from None
            except OSError as err:
                if err.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                self.flock = False
                return fd
            st, now = os.fstat(fd), os.stat(self.path)   # the file we locked is still the one at path
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)
        raise RunDirBusy(f"{self.path} keeps being replaced while this run tries to lock it")

    def _busy(self, holder: dict | None) -> str:
        return (f"{self.path.parent} is in use by another jaxdl run: {describe(holder)}. Two writers would "
                f"interleave metrics.jsonl and the checkpoints; wait for it to end, stop it, or pick another "
                f"hydra.run.dir")

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        try:
            old = self._read(fd)
            here = old is not None and old.get("host") == socket.gethostname()
            mine = old is not None and old.get("pid") == os.getpid()    # a record this process left
            if old is not None and here and _alive(old) and (not self.flock or not mine):
                raise RunDirBusy(self._busy(old))            # a live holder whose lock we could take:
            if old is not None and not self.flock and not here:    # no flock, or run.lock was replaced
                raise RunDirBusy(self._busy(old) + f". This file system has no flock, so a record of another "
                                 f"host cannot be checked: if that process is gone, delete {self.path}")
            if not self.flock:
                print(f"[jaxdl] warning: the file system of {self.path.parent} does not support flock; "
                      "run.lock only records this process (see jaxdl/run/lock.py)", file=sys.stderr)
            self.record = self._mine()
            self._write(fd, self.record)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        if old is not None and old.get("pid") != os.getpid():
            self.took_over = old
            gone = "which no longer runs" if here else "whose lock was released, so it has ended"
            print(f"[jaxdl] notice: taking over {self.path} left by {describe(old)}, {gone}", file=sys.stderr)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if self.flock or (self._read(self.fd) or {}).get("pid") == os.getpid():
                self._write(self.fd, None)
        finally:
            os.close(self.fd)                 # closing the fd releases the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run_dir(run_dir: Path) -> RunLock:
    """Take the run dir's lock or raise RunDirBusy naming the process that holds it."""
    return RunLock(run_dir).acquire()


def holder(run_dir: Path, name: str = LOCK_NAME) -> dict | None:
    """The record of the live process holding the run dir's lock (a run in progress), or None.
    Asks for a shared flock without waiting: refused means a writer holds it. Where the file
    system has no flock, a record of a live process on this host counts as held."""
    path = Path(run_dir) / name
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.pread(fd, 65536, 0)
        try:
            record = json.loads(raw) if raw.strip() else None
        except ValueError:
            record = {"pid": None, "host": "?"}
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return record or {}
        except OSError:
            here = record is not None and record.get("host") == socket.gethostname()
            return record if here and _alive(record) else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
