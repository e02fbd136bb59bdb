"""Atomic, checksummed files and folders: a finished result is either whole on disk or absent;
and records: dataclasses written to and read from their JSON form (:func:`to_record`,
:func:`from_record`)."""

from __future__ import annotations

import collections.abc
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import types
import uuid
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

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
        fsync_directory(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot open."""
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
        fsync_directory(cells_root)
    except BaseException:
        if old is not None and not final.exists():
            os.replace(old, final)  # interrupted between the renames: the earlier result comes back
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ---- records: dataclasses to and from their JSON form -------------------------------------------

RECORD_KEY = "record_key"  # field metadata: the key of the field in the file, when not its name
OMIT_DEFAULT = "omit_default"  # field metadata: left out of the file while it holds its default

Record = TypeVar("Record")


def to_record(obj: Any, only: Collection[str] | None = None) -> dict[str, Any]:
    """The JSON form of a dataclass: one key per field (or per field in ``only``), nested
    dataclasses through their ``to_dict`` (or this), tuples as lists, mappings as dicts; a field
    whose metadata sets :data:`OMIT_DEFAULT` is left out while it holds its default."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if only is not None and f.name not in only:
            continue
        value = getattr(obj, f.name)
        if f.metadata.get(OMIT_DEFAULT) and value == _default_of(f):
            continue
        out[f.metadata.get(RECORD_KEY, f.name)] = _jsonable(value)
    return out


def from_record(cls: type[Record], raw: Mapping[str, Any]) -> Record:
    """A dataclass read from its JSON form (:func:`to_record`), each value converted by the
    field's type hint: ``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[X, ...]``,
    fixed tuples, ``Mapping[str, X]`` and nested dataclasses (through their ``from_dict`` when
    they have one). A missing key, or ``null`` for a field that cannot be None, reads as the
    field's default; a missing key without a default raises KeyError."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cast(Any, cls)):
        if not f.init:
            continue
        key, hint = f.metadata.get(RECORD_KEY, f.name), hints[f.name]
        if key not in raw or (raw[key] is None and not _optional(hint)):
            if _has_default(f):
                continue
            if key not in raw:
                raise KeyError(key)
        values[f.name] = _convert(hint, raw[key])
    return cls(**values)


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _jsonable(value: Any) -> Any:
    """The file form of a value: dataclasses as dicts, tuples as lists, mappings as dicts."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_record(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _optional(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _convert(hint: Any, value: Any) -> Any:
    """``value`` from a file as the type ``hint`` names."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        items = tuple(value)
        if len(items) != len(args):
            raise ValueError(f"expected {len(args)} items, got {len(items)}")
        return tuple(_convert(a, v) for a, v in zip(args, items))
    if origin in (dict, Mapping, collections.abc.Mapping):
        return {str(k): _convert(args[1], v) for k, v in dict(value).items()}
    if dataclasses.is_dataclass(hint):
        reader = getattr(hint, "from_dict", None)
        return reader(value) if reader is not None else from_record(cast(Any, hint), value)
    if hint in (int, float, str, bool):
        return hint(value)
    return value
