"""The small file and batching mechanisms every job shares.

* ``atomic_path(path)``: a context giving a temporary path beside ``path`` that replaces ``path`` only
  when the block ends without an exception (readers see the old file or the new one, never a part);
  ``atomic_write(path, text | bytes)`` and ``write_json(path, obj)`` on top of it.
* ``fixed_batches(n, batch_size)`` and ``pad_rows(x, batch_size)``: a ragged list cut into batches of
  one compiled shape (the last one padded by repeating its first row; callers keep ``[:n]``).
* ``dataset_dir(given)``: where prepared datasets go, the one rule for every builder and job.
* ``workdir_lock(workdir)``: one run per workdir at a time (``WorkdirInUse`` otherwise).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "atomic_write", "write_json", "fixed_batches", "pad_rows", "dataset_dir", "workdir_lock",
           "WorkdirInUse"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a new temporary path (not yet a file) in ``path``'s folder (created if missing); on a
    clean exit it is renamed onto ``path``, on an exception removed. The suffix is kept (``savefig``
    and ``np.save`` read it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name, created by the writer (so the file gets the umask's mode, not mkstemp's 0600)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Writes ``data`` (text as UTF-8) to ``path`` atomically; returns ``path`` as a ``Path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj, indent: int = 1) -> Path:
    """``obj`` as JSON at ``path``, atomically."""
    return atomic_write(path, json.dumps(obj, indent=indent) + "\n")


def fixed_batches(n: int, batch_size: int) -> Iterator[slice]:
    """``slice``s over ``range(n)`` of ``batch_size`` items each (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def pad_rows(x, batch_size: int) -> np.ndarray:
    """``x`` (n <= batch_size, ...) padded to (batch_size, ...) by repeating its first row, so every
    batch has the one compiled shape; results past row n are to be dropped."""
    x = np.asarray(x)
    if len(x) > batch_size:
        raise ValueError(f"{len(x)} rows do not fit a batch of {batch_size}")
    if len(x) == batch_size:
        return x
    return np.concatenate([x, np.repeat(x[:1], batch_size - len(x), 0)])


def dataset_dir(given: str | os.PathLike | None = None) -> str:
    """Where prepared datasets go: ``given`` when set, else ``$BIOXLSTM_DATA_DIR``, else
    ``~/.cache/bioxlstm_jax/tensorflow_datasets``. The one rule for every builder and job
    (``--config.tfds_dir`` unset or empty means "not given")."""
    if given:
        return str(given)
    return os.environ.get("BIOXLSTM_DATA_DIR") or str(Path.home() / ".cache" / "bioxlstm_jax" / "tensorflow_datasets")


class WorkdirInUse(OSError):
    """Another process holds the workdir's lock."""


_HELD: dict[str, tuple[int, int]] = {}  # resolved workdir -> (open lock file descriptor, depth)


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[None]:
    """Holds ``<workdir>/.lock`` for the block: an exclusive ``flock`` that the kernel releases when the
    holder exits or is killed, so a crashed run never leaves a stale lock. The file records the
    holder's pid, host and start time, named in the ``WorkdirInUse`` another run gets. Re-entrant
    within one process; creates ``workdir``."""
    key = str(Path(workdir).resolve())
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    Path(key).mkdir(parents=True, exist_ok=True)
    path = Path(key) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise WorkdirInUse(f"{key}: in use by {holder}; wait for that run to end or use another --workdir") from None
    os.ftruncate(fd, 0)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
    _HELD[key] = (fd, 1)
    try:
        yield
    finally:
        fd, depth = _HELD.pop(key)
        os.close(fd)  # releases the flock
