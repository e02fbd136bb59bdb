"""What was actually loaded: a hub revision's commit, and a fingerprint of the weights' bytes.

Hub branches are known to serve identical weights under different step names (EleutherAI/pythia
#205 and #83, allenai/OLMo#915), and a branch or a local folder can change behind the same name.
So every scored result records:

* ``model_commit``: the commit a hub revision resolved to (read from the hub cache, where the
  download recorded which commit the branch or tag named); None for a local model.
* ``weights_fingerprint``: SHA-256 over the lines ``<file name> <SHA-256 of its bytes>``, one
  per weight file, sorted by name, each ended by a newline. The weight files are the
  ``*.safetensors`` files of the model's folder, or, where there are none, its
  ``pytorch_model*.bin`` files (the files transformers loads; optimizer states,
  ``training_args.bin`` and the like are left out). Equal
  fingerprints mean byte-identical weight files; a model converted from ``.bin`` to
  ``.safetensors`` fingerprints differently (a fingerprint names files, not tensors).

A file's SHA-256 is the Git LFS object id the hub lists for it, so it is read without hashing
where the hub cache already names it: huggingface_hub stores an LFS file as ``blobs/<sha256>``
behind the snapshot's symlink. Any other file is hashed once and remembered by (path, size,
mtime, inode), in memory and under ``$ERRORENTROPY_CACHE`` (default
``~/.cache/errorentropy``), so a sweep does not read the same weights again for every dataset,
worker or run. :func:`hub_fingerprint` gives the same fingerprint from the hub's file listing,
before anything is downloaded (network needed).
"""

from __future__ import annotations

import hashlib
import os
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errorentropy.storage import atomic_write_text

CACHE_ENV = "ERRORENTROPY_CACHE"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_READ_BLOCK = 1 << 24

# file key (path, size, mtime_ns, inode) -> SHA-256 of its bytes, for this process.
_MEMORY: dict[tuple[str, int, int, int], str] = {}
# model -> (where its weights live: a local folder or a hub id, the hub revision or None).
_LOADED: weakref.WeakKeyDictionary[Any, tuple[str, str | None]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Provenance:
    """What a scored result was computed from: the hub commit (None for a local model) and the
    weights' fingerprint (None when no weight file was found)."""

    model_commit: str | None
    weights_fingerprint: str | None

    def fields(self) -> dict[str, str | None]:
        """The summary fields, by name."""
        return {"model_commit": self.model_commit, "weights_fingerprint": self.weights_fingerprint}


def weight_files(folder: Path | str) -> list[Path]:
    """The files of ``folder`` that hold the model's weights (see the module docstring), by
    name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    safetensors = sorted(p for p in folder.iterdir() if p.name.endswith(".safetensors"))
    if safetensors:
        return safetensors
    return sorted(
        p for p in folder.iterdir() if p.name.startswith("pytorch_model") and p.suffix == ".bin"
    )


def fingerprint_of(digests: Iterable[tuple[str, str]]) -> str:
    """The fingerprint of (file name, SHA-256) pairs: SHA-256 of their sorted lines."""
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(digests))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def weights_fingerprint(folder: Path | str) -> str | None:
    """The fingerprint of the weight files in ``folder``; None when it holds none."""
    files = weight_files(folder)
    if not files:
        return None
    return fingerprint_of((p.name, file_sha256(p)) for p in files)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes: the hub cache's blob name where it is one, else remembered by
    (path, size, mtime, inode), else read."""
    blob = _hub_blob_digest(path)
    if blob is not None:
        return blob
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key in _MEMORY:
        return _MEMORY[key]
    cached = _disk_cache(key)
    digest = _read_cached(cached) if cached is not None else None
    if digest is None:
        digest = _hash_file(path)
        if cached is not None:
            try:
                atomic_write_text(cached, digest + "\n")
            except OSError:  # a read-only cache: hash again next time
                pass
    _MEMORY[key] = digest
    return digest


def _hub_blob_digest(path: Path) -> str | None:
    """The SHA-256 a hub cache names a file by: a snapshot link to ``blobs/<64 hex>``."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    if target.parent.name == "blobs" and _HEX64.fullmatch(target.name):
        return target.name
    return None


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _disk_cache(key: tuple[str, int, int, int]) -> Path | None:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "errorentropy"
    )
    name = hashlib.sha256(repr(key).encode("utf-8")).hexdigest()
    return Path(root) / "sha256" / name[:2] / name


def _read_cached(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _HEX64.fullmatch(text) else None


# ---- models -----------------------------------------------------------------------------------


def remember(model: Any, source: str, revision: str | None) -> None:
    """Note where ``model``'s weights were loaded from (a local folder, or a hub id at a revision:
    a branch, tag or commit), for :func:`model_provenance`."""
    _LOADED[model] = (source, revision)


def model_provenance(model: Any) -> Provenance:
    """What ``model`` was loaded from: as :func:`remember` noted it, else as its config says
    (``_name_or_path``: a local folder; or a hub id, at the commit the config records, and
    unknown (None, None) where it records none: the revision it was loaded at is not known, and
    guessing the default branch would record another checkpoint's weights)."""
    if model in _LOADED:
        return source_provenance(*_LOADED[model])
    config = getattr(model, "config", None)
    source = str(getattr(config, "_name_or_path", "") or "")
    if not source or Path(source).is_dir():
        return source_provenance(source)
    commit = getattr(config, "_commit_hash", None)
    return source_provenance(source, commit) if commit else Provenance(None, None)


def source_provenance(source: str, revision: str | None = None) -> Provenance:
    """The provenance of weights loaded from ``source``: a local folder (no commit), or a hub id
    at ``revision`` (default: main), read from the local hub cache (None where it is not
    there)."""
    if not source:
        return Provenance(None, None)
    if Path(source).is_dir():
        return Provenance(None, weights_fingerprint(source))
    snapshot = hub_snapshot(source, revision)
    if snapshot is None:
        return Provenance(None, None)
    return Provenance(snapshot.name, weights_fingerprint(snapshot))


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The hub cache's snapshot folder of ``repo_id`` at ``revision`` (a branch or tag the cache
    resolves through ``refs/``, or a commit), named by its commit; found by its config.json,
    which any loaded model has. None when the cache does not hold it."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    found = try_to_load_from_cache(repo_id, "config.json", revision=revision or "main")
    if not isinstance(found, str):
        return None
    snapshot = Path(found).parent
    return snapshot if snapshot.parent.name == "snapshots" else None


def hub_fingerprint(repo_id: str, revision: str | None = None) -> Provenance:
    """The commit a hub revision names now and its weights' fingerprint, from the hub's own
    file listing (each LFS file's SHA-256), without downloading a weight (network needed).

    The same fingerprint as the downloaded files give: the weight files are chosen by the same
    rule, by name, among the repository's top-level files.
    """
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    listed = {
        s.rfilename: s.lfs.sha256
        for s in info.siblings or []
        if "/" not in s.rfilename and s.lfs is not None
    }
    chosen = [n for n in listed if n.endswith(".safetensors")] or [
        n for n in listed if n.startswith("pytorch_model") and n.endswith(".bin")
    ]
    digests = [(name, listed[name]) for name in chosen]
    return Provenance(info.sha, fingerprint_of(digests) if digests else None)
