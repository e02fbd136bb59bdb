"""What was actually loaded: a hub revision's commit, and a fingerprint of the weights' bytes.

Hub branches are known to serve identical weights under different step names (EleutherAI/pythia
#205 and #83, allenai/OLMo#915), and a branch or a local folder can change behind the same name.
So every scored result records:

* ``model_commit``: the commit a hub revision resolved to (read from the hub cache, where the
  download recorded which commit the branch or tag named); None for a local model.
* ``weights_fingerprint``: SHA-256 over the lines ``<file name> <SHA-256 of its bytes>``, one
  per weight file, sorted by name, each ended by a newline. The weight files are those
  transformers loads from the model's folder, chosen as it chooses them: the file
  ``config.json``'s ``transformers_weights`` names, else the first of ``model.safetensors``,
  ``model.safetensors.index.json``, ``pytorch_model.bin``, ``pytorch_model.bin.index.json``;
  an index stands for the shards its ``weight_map`` names. Other files (a
  ``consolidated.safetensors`` copy for another library, optimizer states,
  ``training_args.bin``) are left out. Equal fingerprints mean byte-identical weight files; a
  model converted from ``.bin`` to ``.safetensors`` fingerprints differently (a fingerprint
  names files, not tensors). A model whose parameters changed in memory after
  :func:`~errorentropy.models.loading.load_model` (a cheap digest of them, taken at load and
  again when a result is recorded, differs) records None, and a note says why: the files'
  fingerprint would name weights that were not scored.

A file's SHA-256 is the Git LFS object id the hub lists for it, so it is read without hashing
where the hub cache already names it: huggingface_hub stores an LFS file as ``blobs/<sha256>``
behind the snapshot's symlink. Any other file is hashed once and remembered by (path, size,
mtime, inode), in memory and under ``$ERRORENTROPY_CACHE`` (default
``~/.cache/errorentropy``), so a sweep does not read the same weights again for every dataset,
worker or run. A sweep also notes each local folder's fingerprint in its own folder with the
size and mtime of the files then (:func:`local_fingerprint`), so that planning, on any machine,
hashes a folder only when those changed, and a dry run reads no weights at all.
:func:`hub_fingerprint` gives the same fingerprint from the hub's file listing,
before anything is downloaded (network needed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errorentropy.storage import atomic_write_text

CACHE_ENV = "ERRORENTROPY_CACHE"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_READ_BLOCK = 1 << 24

# file key (path, size, mtime_ns, inode) -> SHA-256 of its bytes, for this process.
_MEMORY: dict[tuple[str, int, int, int], str] = {}
# model -> (where its weights live: a local folder or a hub id, the hub revision or None, the
# digest of its parameters as loaded).
_LOADED: weakref.WeakKeyDictionary[Any, tuple[str, str | None, str]] = weakref.WeakKeyDictionary()
# Values read from each parameter for its digest: evenly spaced over it, so that a change to all
# or much of a tensor (scaled, replaced, cast, re-initialized) is seen at a few KiB per model.
_SAMPLES = 64
CHANGED_NOTE = (
    "weights_fingerprint left out: the model's parameters differ from those load_model loaded "
    "(changed or cast in memory since), so the fingerprint of its files would not describe them"
)


@dataclass(frozen=True)
class Provenance:
    """What a scored result was computed from: the hub commit (None for a local model) and the
    weights' fingerprint (None when no weight file was found)."""

    model_commit: str | None
    weights_fingerprint: str | None
    # Why the fingerprint is None though the weights were loaded from files (for the notes).
    note: str | None = None

    def fields(self) -> dict[str, str | None]:
        """The summary fields, by name."""
        return {"model_commit": self.model_commit, "weights_fingerprint": self.weights_fingerprint}


# The weight files transformers' from_pretrained picks in a folder, in its order of preference
# (transformers.modeling_utils._get_resolved_checkpoint_files, no variant): a single file, or an
# index whose weight_map names the shards.
LOAD_ORDER = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def weight_files(folder: Path | str) -> list[Path]:
    """The files of ``folder`` that transformers loads the weights from (see the module
    docstring), by name; none where it holds no weights transformers would load."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = loaded_names([p.name for p in folder.iterdir()], lambda n: _read_json(folder / n))
    return sorted(folder / n for n in names if (folder / n).is_file())


def loaded_names(names: Iterable[str], read: Callable[[str], Any]) -> list[str]:
    """Which of the file ``names`` (one folder's) transformers loads the weights from:
    ``config.json``'s ``transformers_weights`` where it names one, else the first of
    :data:`LOAD_ORDER` present; an index stands for the shards its ``weight_map`` names.
    ``read(name)`` gives a JSON file's content (None where unreadable)."""
    present = set(names)
    config = read("config.json") if "config.json" in present else None
    explicit = config.get("transformers_weights") if isinstance(config, dict) else None
    order = [explicit] if isinstance(explicit, str) else list(LOAD_ORDER)
    chosen = next((n for n in order if n in present), None)
    if chosen is None:
        return []
    if not chosen.endswith(".index.json"):
        return [chosen]
    index = read(chosen)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        return []
    return sorted({str(v) for v in weight_map.values()})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


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
    a branch, tag or commit), and a digest of its parameters, for :func:`model_provenance`."""
    _LOADED[model] = (source, revision, parameters_digest(model))


def parameters_digest(model: Any) -> str:
    """A cheap digest of ``model``'s parameters: SHA-256 over each one's name, shape and up to
    :data:`_SAMPLES` of its values, evenly spaced (as float32, copied to the CPU in one go;
    parameters on the meta device by name and shape). Not a full checksum: it tells a model
    changed as a whole or tensor by tensor from the one loaded, reading a few KiB."""
    import torch

    described, samples = [], []
    with torch.no_grad():
        for name, param in model.named_parameters():
            described.append(f"{name} {tuple(param.shape)}")
            flat = param.detach().reshape(-1)
            if param.device.type != "meta" and flat.numel():
                step = max(1, -(-flat.numel() // _SAMPLES))
                samples.append(flat[::step].float().cpu())
        values = torch.cat(samples).numpy().tobytes() if samples else b""
    digest = hashlib.sha256("\n".join(described).encode("utf-8"))
    digest.update(values)
    return digest.hexdigest()


def model_provenance(model: Any) -> Provenance:
    """What ``model`` was loaded from: as :func:`remember` noted it (the fingerprint left out,
    with a note, when its parameters changed since), else as its config says (``_name_or_path``:
    a local folder; or a hub id, at the commit the config records, and unknown (None, None)
    where it records none: the revision it was loaded at is not known, and guessing the
    default branch would record another checkpoint's weights)."""
    if model in _LOADED:
        source, revision, digest = _LOADED[model]
        if parameters_digest(model) == digest:
            return source_provenance(source, revision)
        snapshot = None if Path(source).is_dir() else hub_snapshot(source, revision)
        return Provenance(snapshot.name if snapshot else None, None, CHANGED_NOTE)
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
    rule among the repository's top-level files (``config.json`` and a shard index, small, are
    downloaded to read which).
    """
    from huggingface_hub import HfApi, hf_hub_download

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    listed = {s.rfilename: s.lfs for s in info.siblings or [] if "/" not in s.rfilename}

    def read(name: str) -> Any:
        return _read_json(Path(hf_hub_download(repo_id, name, revision=info.sha)))

    digests = [
        (name, lfs.sha256)
        for name in loaded_names(listed, read)
        if (lfs := listed.get(name)) is not None
    ]
    return Provenance(info.sha, fingerprint_of(digests) if digests else None)


# ---- planning a sweep without reading weights -------------------------------------------------

# The sweep folder's record of each local weights folder's fingerprint, with the key of its
# files when it was taken: planning hashes a folder again only when that key changed.
FINGERPRINTS_DIR = "fingerprints"
# What a dry run gives for a folder whose files changed since it was noted (it hashes nothing).
UNHASHED = "unhashed"


def files_key(files: Iterable[Path]) -> str:
    """A cheap stand-in for the fingerprint of ``files``, read from the directory alone: each
    file's name with its hub blob name (its SHA-256), or with its size and mtime in ns."""
    lines = []
    for path in files:
        blob = _hub_blob_digest(path)
        stat = path.stat()
        lines.append(f"{path.name} {blob or f'{stat.st_size} {stat.st_mtime_ns}'}")
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def local_fingerprint(folder: Path | str, store: Path, *, read: bool = True) -> str | None:
    """The fingerprint of the weights in ``folder`` now, as a sweep's planning needs it (None
    where it holds none, or cannot be read).

    Taken from ``store`` (the sweep's :data:`FINGERPRINTS_DIR`) while the files' key
    (:func:`files_key`) is the one it was noted with; else, with ``read``, hashed and noted.
    Without ``read`` (a dry run reads no weights): :data:`UNHASHED` where the files changed since
    they were noted, None where they never were.
    """
    folder = Path(folder).resolve()
    try:
        files = weight_files(folder)
        if not files:
            return None
        key = files_key(files)
        entry = store / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:32]}.json"
        noted = _read_json(entry)
        if isinstance(noted, dict) and noted.get("key") == key:
            return str(noted["fingerprint"])
        if not read:
            return UNHASHED if isinstance(noted, dict) else None
        fingerprint = fingerprint_of((p.name, file_sha256(p)) for p in files)
    except (OSError, KeyError):
        return None
    if files_key(weight_files(folder)) == key:  # not changed while being read
        record = {"folder": str(folder), "key": key, "fingerprint": fingerprint}
        with contextlib.suppress(OSError):  # a read-only sweep folder: hashed again next time
            atomic_write_text(entry, json.dumps(record, indent=1) + "\n")
    return fingerprint


def weights_change(recorded: str, now: str) -> str:
    """Why a done cell is redone: the fingerprint it recorded is not its weights' now."""
    if now == UNHASHED:
        return (
            "its weights files changed on disk since (size or modification time): maybe other "
            "weights; a run hashes them and redoes the cell if so"
        )
    return f"done from other weights (fingerprint {recorded[:12]}, now {now[:12]}); will redo"
