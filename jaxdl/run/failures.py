"""A run that fails for a reason outside the code (a full disk, a read-only or vanished
run dir, an unwritable file, a device out of memory) ends with ONE line that names the
path or the key and the fix; the traceback goes to the run's log file only.

    line = explain(err, run_dir)        # None: not one of these; let it raise
    where = log_traceback(err, run_dir) # the run's log (Hydra's job log), else a temp file

Nothing saved is touched: checkpoints are written to a temporary name and renamed when
complete (orbax), metrics.jsonl is appended, progress.json and summary.json are renamed
into place, so a relaunch resumes from the last checkpoint."""
from __future__ import annotations

import errno
import logging
import os
import tempfile
import traceback
from pathlib import Path

_TEXT = {errno.ENOSPC: "No space left on device", errno.EROFS: "Read-only file system",
         errno.EACCES: "Permission denied", errno.EPERM: "Operation not permitted",
         errno.EDQUOT: "Disk quota exceeded"}


def _chain(err: BaseException):
    """err, its causes and contexts, and the members of exception groups."""
    seen, todo = set(), [err]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]


def _os_error(err: BaseException) -> tuple[int | None, str | None]:
    """(errno, file name) of the first OSError in the chain, or one named in an error's text
    (orbax and tensorstore pass OSErrors on as text)."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in (*_TEXT, errno.ENOENT):
            return e.errno, e.filename
    for e in _chain(err):
        for no, text in _TEXT.items():
            if text in str(e):
                return no, None
    return None, None


def _oom(err: BaseException) -> str | None:
    for e in _chain(err):
        s = str(e)
        if ("RESOURCE_EXHAUSTED" in s and "local file" not in s) or "Out of memory" in s or isinstance(e, MemoryError):
            return (s.strip().splitlines() or [type(e).__name__])[0][:160]
    return None


def explain(err: BaseException, run_dir: Path) -> str | None:
    """The one line for a failure outside the code, or None."""
    run_dir = Path(run_dir)
    no, name = _os_error(err)
    where = name or run_dir
    keep = f"what was saved in {run_dir} is intact; relaunch with the same hydra.run.dir to resume"
    if no in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the disk of {where} ({_TEXT[no]}): free space there (df {run_dir}) or pick "
                f"hydra.run.dir on another disk; {keep}")
    if no == errno.EROFS:
        return f"{where} is on a read-only file system: pick a writable hydra.run.dir (or remount it read-write)"
    if no in (errno.EACCES, errno.EPERM):
        return (f"cannot write {where} ({_TEXT[no]}): make it writable (chmod u+w; chattr -i for an immutable "
                f"file) or pick another hydra.run.dir; {keep}")
    if no == errno.ENOENT and not run_dir.is_dir():
        return (f"the run dir {run_dir} vanished while the run wrote to it (removed or unmounted?): relaunch with "
                "a hydra.run.dir that exists for the whole run")
    why = _oom(err)
    if why is not None:
        return (f"out of memory on the device ({why}): the model, batch or window does not fit; lower "
                "model.hidden, task.streams (or task.batch), tbptt.k2, or set model.remat=sqrt; the checkpoints "
                f"in {run_dir} are intact and a relaunch resumes from the last one")
    return None


def _no_traceback(record: logging.LogRecord) -> bool:
    return not record.exc_info


def tracebacks_to_the_log_only() -> None:
    """Keep tracebacks off the terminal: console log handlers drop records that carry one
    (orbax logs each failed save with its traceback; the run's log file keeps them), and a
    log handler that cannot write (a full disk under the log file) fails silently
    (logging.raiseExceptions) instead of printing '--- Logging error ---' and a traceback
    for every record."""
    logging.raiseExceptions = False
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            if _no_traceback not in h.filters:
                h.addFilter(_no_traceback)


def log_file(run_dir: Path) -> Path:
    """The run's log file: the file of Hydra's job log handler (<run_dir>/<job>.log), else
    <run_dir>/jaxdl.log."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            return Path(h.baseFilename)
    return Path(run_dir) / "jaxdl.log"


def log_traceback(err: BaseException, run_dir: Path) -> Path:
    """Append err's traceback to the run's log file (or, where that cannot be written, to a new
    file in the temp dir); returns where it went."""
    text = "".join(traceback.format_exception(err))
    target = log_file(run_dir)
    try:
        with open(target, "a") as f:
            f.write(text)
        return target
    except OSError:
        fd, path = tempfile.mkstemp(prefix="jaxdl-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return Path(path)
