"""Atomic, checksummed files and folders: a finished result is either whole on disk or absent."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from errorentropy.errors import UserError


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.chmod(
                tmp, 0o666 & ~_umask()
            )  # mkstemp makes 0600; results should read like any file written here
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = (
    _read_umask()
)  # read once, at import: setting it later would race with other threads' files


def _umask() -> int:
    return _UMASK


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(payload: Any) -> str:
    """JSON with sorted keys and no whitespace: the bytes a checksum is taken over."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def write_checked_json(path: Path | str, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically with a ``checksum`` field over its canonical form."""
    body = dict(payload)
    body.pop("checksum", None)
    body["checksum"] = sha256_hex(canonical_json(body).encode("utf-8"))
    atomic_write_text(path, json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def read_checked_json(path: Path | str, what: str = "file") -> dict[str, Any]:
    """Read a file written by :func:`write_checked_json`; a truncated or edited file is an error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}; check the path") from None
    except OSError as exc:
        raise UserError(
            f"cannot read {what} {path}: {exc.strerror}; check its permissions"
        ) from None
    try:
        # NaN/Infinity are not JSON and never written by us: refuse them instead of reading them.
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # JSONDecodeError, NaN, over-long ints, deep nesting.
        raise UserError(
            f"{what} {path} is corrupted or truncated (not valid JSON); delete it and recompute"
        ) from None
    if not isinstance(body, dict) or "checksum" not in body:
        raise UserError(
            f"{what} {path} has no checksum; it was not written by errorentropy or is damaged"
        )
    expected = body.pop("checksum")
    try:
        actual = sha256_hex(canonical_json(body).encode("utf-8"))
    except (ValueError, RecursionError):  # e.g. 1e999 parses to inf, which canonical JSON refuses
        raise UserError(
            f"{what} {path} is corrupted (holds values that are not finite numbers); "
            "delete it and recompute"
        ) from None
    if expected != actual:
        raise UserError(
            f"{what} {path} fails its checksum (corrupted or edited); delete it and recompute"
        )
    return body


def commit_folder(cells_root: Path, cell_id: str, build: Callable[[Path], None]) -> Path:
    """Build a folder in a hidden sibling, then rename it into ``cells_root/cell_id`` in one step.

    An older folder of that name is first moved aside and deleted after. A kill leaves the final
    name either absent, holding the old folder, or holding the whole new one, never a mixture;
    leftovers start with a dot (``.NAME.tmp-*``, ``.NAME.old-*``).
    """
    cells_root.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = cells_root / f".{cell_id}.tmp-{tag}"
    final = cells_root / cell_id
    tmp.mkdir()
    old = None
    try:
        build(tmp)
        if final.exists():
            old = cells_root / f".{cell_id}.old-{tag}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_directory(cells_root)
    except BaseException:
        if old is not None and not final.exists():
            os.replace(old, final)  # interrupted between the renames: the earlier result comes back
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final
