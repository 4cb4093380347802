"""Claims on a shared results store, so that sweeps share the work instead of repeating it.

Before a sweep runs a point it claims the point's key: a `.KEY.claim` file naming its process
(pid, host), created under the store's lock (`.wsebench.lock`, an exclusive `flock`), so two
sweeps never both hold one key. A claim whose owner has died (same host: its pid is gone;
another host: the owner has not touched it for `STALE_SECONDS`) is abandoned, and the next
sweep takes it over. The lock also covers writing an entry (`Store.put`: the .npz, then the
JSON), so an entry's two files always come from one writer, and the clean-up of what a crashed
writer left behind: temporary files of dead writers, abandoned claims, .npz files without JSON.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

LOCK = ".wsebench.lock"
STALE_SECONDS = 600.0      # a claim from another host that its owner left untouched this long


@contextlib.contextmanager
def locked(folder: Path):
    """The store's exclusive lock (fcntl.flock; a no-op where flock does not exist)."""
    try:
        import fcntl
    except ImportError:                      # Windows: one sweep per store
        yield
        return
    fd = os.open(Path(folder) / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def claim_path(folder: Path, key: str) -> Path:
    return Path(folder) / f".{key}.claim"


def pid_alive(pid) -> bool:
    """Whether process `pid` of this host runs (a zombie does not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _owner_alive(path: Path) -> bool:
    try:
        owner = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return False                          # unreadable: its writer died mid-write
    if not isinstance(owner, dict):
        return False
    if owner.get("host") == socket.gethostname():
        return pid_alive(owner.get("pid"))
    return age < STALE_SECONDS


def _mine(path: Path) -> bool:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return owner == _me()


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def try_claim(folder: Path, key: str) -> bool:
    """Claim `key` for this process; False while another live process holds it."""
    path = claim_path(folder, key)
    with locked(folder):
        if path.exists() and not _mine(path) and _owner_alive(path):
            return False
        path.write_text(json.dumps(_me()))
    return True


def release(folder: Path, keys) -> None:
    """Drop this process's claims on `keys` (claims of others are left alone)."""
    with locked(folder):
        for key in keys:
            path = claim_path(folder, key)
            if _mine(path):
                path.unlink(missing_ok=True)


def touch(folder: Path, keys) -> None:
    """Show that this process still works on `keys` (for sweeps on other hosts)."""
    for key in keys:
        with contextlib.suppress(OSError):
            os.utime(claim_path(folder, key))


def clean_stale(folder: Path) -> list[str]:
    """Remove what dead writers left: temporary files, abandoned claims, .npz without JSON.
    Returns the names removed."""
    folder, removed = Path(folder), []
    with locked(folder):
        for path in folder.glob(".*.tmp"):
            if not _writer_alive(path):
                removed.append(path.name)
                path.unlink(missing_ok=True)
        for path in folder.glob(".*.claim"):
            if not _owner_alive(path):
                removed.append(path.name)
                path.unlink(missing_ok=True)
        for path in folder.glob("*.npz"):
            live = claim_path(folder, path.stem)
            if not path.with_suffix(".json").exists() and not (live.exists() and _owner_alive(live)):
                removed.append(path.name)
                path.unlink(missing_ok=True)
    return removed


def _writer_alive(tmp: Path) -> bool:
    """`.NAME.PID.RANDOM.tmp` (store.atomic_write): its writer's pid, else its age, decides."""
    parts = tmp.name.split(".")
    pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
    if pid is not None:
        return pid_alive(pid)
    try:
        return time.time() - tmp.stat().st_mtime < STALE_SECONDS
    except OSError:
        return False
