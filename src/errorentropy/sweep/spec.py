"""The sweep spec: which models, at which revisions, over which datasets, scored how (a TOML file).

Example (every table and key is listed in ``docs/sweep.md``)::

    [scoring]                       # any ScoreOptions field
    max_length = 512
    [run]
    dtype = "auto"
    [[models]]
    id = "EleutherAI/pythia-160m"   # hub id, or a local folder (relative to this file)
    family = "pythia"               # default: the config's model_type
    revisions = ["step1000", "step143000"]
    [[datasets]]
    data = "wikipedia"
    samples = 1000
    seed = 42

Every mistake is a :class:`UserError` of one line; an unknown key names its table and its line.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from errorentropy.data.corpus import BUILTINS, HUB_PREFIX, PRESETS, hub_preset
from errorentropy.errors import UserError
from errorentropy.options import OPTIONS, ScoreOptions, check_window_options
from errorentropy.sweep.cells import CellKey, slug

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_KEYS = ("scoring", "run", "models", "datasets")
SCORING_KEYS = tuple(o.name for o in OPTIONS)
RUN_KEYS = ("dtype", "device", "device_map", "trust_remote_code")
MODEL_KEYS = ("id", "label", "family", "revisions", "dtype", "trust_remote_code")
DATASET_KEYS = ("data", "label", "samples", "seed", "text_field")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the sweep: its spec id, the path or hub id it loads from, and its labels."""

    id: str
    source: str  # what load_model receives: a hub id, or an absolute local path
    label: str
    family: str | None
    revisions: tuple[str | None, ...]  # (None,) = the default revision
    dtype: str | None = None
    trust_remote_code: bool | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the sweep: a data spec as ``load_corpus`` takes it, sampled the same for every
    model."""

    data: str  # as written in the spec
    source: str  # what load_corpus receives (local paths made absolute)
    label: str
    samples: int | None
    seed: int | None
    text_field: str = "text"


@dataclass(frozen=True)
class RunSpec:
    """Where and in what precision models run."""

    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep spec."""

    models: tuple[ModelSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    scoring: dict[str, Any]  # ScoreOptions keyword arguments
    run: RunSpec
    path: Path | None = None
    text: str = ""

    def score_options(self) -> ScoreOptions:
        """The :class:`~errorentropy.options.ScoreOptions` every cell is scored with."""
        return ScoreOptions(**self.scoring)

    def model_dtype(self, model: ModelSpec) -> str:
        """The dtype ``model`` loads in: its own, else the ``[run]`` table's."""
        return model.dtype or self.run.dtype

    def model_trust(self, model: ModelSpec) -> bool:
        """Whether ``model``'s own code may run: its own setting, else the ``[run]`` table's."""
        return (
            self.run.trust_remote_code
            if model.trust_remote_code is None
            else model.trust_remote_code
        )


def load_spec(path: Path | str) -> SweepSpec:
    """Read and validate a spec file; relative local paths in it resolve against its folder."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"sweep spec {path} not found; pass a TOML file (see docs/sweep.md)"
        ) from None
    except IsADirectoryError:
        raise UserError(f"sweep spec {path} is a folder; pass a TOML file") from None
    except OSError as exc:
        raise UserError(f"cannot read sweep spec {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"sweep spec {path} is not valid UTF-8 (bad byte at offset {exc.start}); save "
            "it as UTF-8"
        ) from None
    return replace(
        parse_spec(text, base_dir=path.resolve().parent, name=str(path)), path=path.resolve()
    )


def parse_spec(text: str, *, base_dir: Path | str = ".", name: str = "spec") -> SweepSpec:
    """Parse spec text; ``base_dir`` anchors relative paths, ``name`` prefixes error messages."""
    try:
        body = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{name}: invalid TOML: {str(exc).splitlines()[0]}") from None
    checker = _Checker(text, name)
    checker.known(body, TOP_KEYS, None)
    scoring = _scoring(checker, checker.table(body, "scoring"))
    run = _run(checker, checker.table(body, "run"))
    base = Path(base_dir)
    models = tuple(
        _model(checker, item, i, base) for i, item in enumerate(checker.array(body, "models"))
    )
    datasets = tuple(
        _dataset(checker, item, i, base) for i, item in enumerate(checker.array(body, "datasets"))
    )
    for kind, items in (("models", models), ("datasets", datasets)):
        if not items:
            raise UserError(
                f"{name}: no [[{kind}]] given; add at least one [[{kind}]] table (see "
                "docs/sweep.md)"
            )
        _unique(name, kind, [(x.label, slug(x.label)) for x in items])
    for m in models:
        seen: dict[str, str | None] = {}
        for r in m.revisions:
            folder = slug(r or "main")
            if folder in seen:
                what = (
                    f"revision {r!r} twice"
                    if seen[folder] == r
                    else f"revisions {seen[folder]!r} and {r!r}, which name the same cell folder"
                )
                raise UserError(f"{name}: model {m.label!r} lists {what}; list each revision once")
            seen[folder] = r
    longest = max(
        (
            CellKey(m.label, r, d.label).cell_id
            for m in models
            for r in m.revisions
            for d in datasets
        ),
        key=lambda c: len(c.encode()),
    )
    if len(longest.encode()) > MAX_CELL_NAME:
        raise UserError(
            f"{name}: cell folder {longest[:60]}... would be {len(longest.encode())} "
            "bytes, more than file systems allow with its temporary suffix "
            f'({MAX_CELL_NAME}); give the model or dataset a shorter label = "..."'
        )
    spec = SweepSpec(models, datasets, scoring, run, None, text)
    spec.score_options()  # validates nothing further, but fails early on a bad field
    return spec


# Bytes: a cell is written as ".NAME.tmp-PID-XXXXXXXX" first, and names stop at 255.
MAX_CELL_NAME = 200

# Scoring settings that change no number (results are bit-identical whatever the batch size):
# changing them mid-sweep, e.g. a smaller batch after running out of memory, redoes nothing.
SPEED_ONLY = ("batch_size",)
# Scoring settings that change no scored number, only what a summary derives from the histogram
# (rbp_k: which RBP_k; a cell without them gets them from its histogram when read).
DERIVED_ONLY = ("rbp_k",)


def cell_settings(
    spec: SweepSpec, model: ModelSpec, revision: str | None, dataset: DatasetSpec
) -> dict[str, Any]:
    """Everything in the spec that determines one cell's numbers (not where it ran): the scoring
    options in full (defaults filled in, so an omitted default equals the value written out),
    less those that change no number."""
    effective = spec.score_options()
    left_out = (*SPEED_ONLY, *DERIVED_ONLY)
    scoring = {k: getattr(effective, k) for k in sorted(SCORING_KEYS) if k not in left_out}
    return {
        "model_id": model.id,
        "revision": revision,
        "dtype": spec.model_dtype(model),
        "data": dataset.data,
        "samples": dataset.samples,
        "seed": dataset.seed,
        "text_field": dataset.text_field,
        "scoring": scoring,
    }


def legacy_cell_settings(
    spec: SweepSpec, model: ModelSpec, revision: str | None, dataset: DatasetSpec
) -> dict[str, Any]:
    """The settings digested by errorentropy 0.1.0 before this change (the spec's own [scoring]
    keys only): cells finished then stay finished."""
    return {
        **cell_settings(spec, model, revision, dataset),
        "scoring": {k: spec.scoring.get(k) for k in sorted(spec.scoring) if k not in DERIVED_ONLY},
    }


def settings_digest(settings: dict[str, Any]) -> str:
    """A short stable digest of :func:`cell_settings`: a finished cell with another digest is
    stale."""
    raw = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()[:16]


# ---- validation helpers --------------------------------------------------------------------


def _unique(name: str, kind: str, labels: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for label, slugged in labels:
        if slugged in seen:
            what = (
                f"label {label!r} twice"
                if seen[slugged] == label
                else f"labels {seen[slugged]!r} and {label!r}, which name the same cell folder"
            )
            raise UserError(f'{name}: [[{kind}]] has {what}; give each a distinct label = "..."')
        seen[slugged] = label


class _Checker:
    """Type and key checks whose messages name the table and the line in the source text."""

    def __init__(self, text: str, name: str) -> None:
        self.lines = text.splitlines()
        self.name = name

    # where -------------------------------------------------------------------------------
    def _header_spans(self) -> list[tuple[str, int, int]]:
        """(header, first line index, end index) for the top level ("") and every
        [table]/[[array]]."""
        spans: list[tuple[str, int, int]] = []
        current, start = "", 0
        for i, line in enumerate(self.lines):
            match = re.match(r"\s*(\[\[?)\s*([^\]]+?)\s*\]\]?", line)
            if match and not re.match(r"\s*\[\[?[^\]]*\]\]?\s*=", line):
                spans.append((current, start, i))
                current, start = match.group(1) + match.group(2), i
        spans.append((current, start, len(self.lines)))
        return spans

    def line_of(self, key: str, table: str | None, index: int | None = None) -> int | None:
        """1-based line of ``key`` inside ``table`` (``models`` item ``index``), or of the table
        header."""
        spans = self._header_spans()
        if table is None:
            candidates = [s for s in spans if s[0] == ""]
            for _, a, b in candidates:
                if (n := self._find_key(key, a, b)) is not None:
                    return n
            for header, a, _ in spans:
                if header.lstrip("[") == key:
                    return a + 1
            return None
        arrays = [s for s in spans if s[0] == "[[" + table]
        tables = [s for s in spans if s[0] == "[" + table]
        if index is not None and index < len(arrays):
            chosen = [arrays[index]]
        else:
            chosen = tables + arrays
        for _, a, b in chosen:
            if (n := self._find_key(key, a, b)) is not None:
                return n
        # Inline tables or dotted keys: the first mention anywhere.
        return self._find_key(key, 0, len(self.lines), anywhere=True)

    def _find_key(self, key: str, start: int, end: int, anywhere: bool = False) -> int | None:
        quoted = re.escape(key)
        pattern = (
            rf"(^|[{{,.\s])[\"']?{quoted}[\"']?\s*="
            if anywhere
            else rf"^\s*[\"']?{quoted}[\"']?\s*(=|\.)"
        )
        for i in range(start, end):
            if re.search(pattern, _strip_comment(self.lines[i])):
                return i + 1
        return None

    def header_line(self, table: str, index: int | None) -> int | None:
        """1-based line of the ``[table]`` header or of the ``index``-th ``[[table]]`` header."""
        spans = [
            s for s in self._header_spans() if s[0] == ("[[" if index is not None else "[") + table
        ]
        i = index or 0
        return spans[i][1] + 1 if i < len(spans) else None

    def where(self, key: str, table: str | None, index: int | None = None) -> str:
        line = self.line_of(key, table, index)
        return f"{self.name}:{line}" if line else self.name

    @staticmethod
    def place(table: str | None, index: int | None) -> str:
        if table is None:
            return "the top level"
        return f"[[{table}]] #{index + 1}" if index is not None else f"[{table}]"

    # checks ------------------------------------------------------------------------------
    def known(
        self,
        body: dict[str, Any],
        keys: tuple[str, ...],
        table: str | None,
        index: int | None = None,
    ) -> None:
        for key in body:
            if key not in keys:
                hint = _closest(key, keys)
                raise UserError(
                    f"{self.where(key, table, index)}: unknown key {key!r} in "
                    f"{self.place(table, index)}"
                    f"{f' (did you mean {hint!r}?)' if hint else ''}; allowed: {', '.join(keys)}"
                )

    def table(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        value = body.get(key, {})
        if not isinstance(value, dict):
            raise UserError(
                f"{self.where(key, None)}: {key!r} must be a table [{key}], not a {_type(value)}"
            )
        return value

    def array(self, body: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = body.get(key, [])
        if isinstance(value, dict):
            raise UserError(
                f"{self.where(key, None)}: write [[{key}]] (an array of tables), not [{key}]"
            )
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise UserError(
                f"{self.where(key, None)}: {key!r} must be an array of tables [[{key}]]"
            )
        return value

    def typed(
        self,
        body: dict[str, Any],
        key: str,
        kinds: tuple[type, ...],
        table: str | None,
        index: int | None = None,
        *,
        required: bool = False,
    ) -> Any:
        if key not in body:
            if required:
                line = self.header_line(table, index) if table else None
                where = f"{self.name}:{line}" if line else self.name
                raise UserError(f"{where}: {self.place(table, index)} needs the key {key!r}")
            return None
        value = body[key]
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(
                {int: "an integer", str: "a string", bool: "true or false", list: "an array"}.get(
                    k, k.__name__
                )
                for k in kinds
            )
            raise UserError(
                f"{self.where(key, table, index)}: {key!r} in {self.place(table, index)} "
                f"must be {names}, not {_type(value)} {value!r}"
            )
        return value

    def choice(
        self,
        body: dict[str, Any],
        key: str,
        choices: tuple[str, ...],
        table: str | None,
        index: int | None = None,
    ) -> str | None:
        value = self.typed(body, key, (str,), table, index)
        if value is not None and value not in choices:
            raise UserError(
                f"{self.where(key, table, index)}: {key} = {value!r} in "
                f"{self.place(table, index)}; choose one of {', '.join(choices)}"
            )
        return value

    def positive(
        self,
        body: dict[str, Any],
        key: str,
        table: str | None,
        index: int | None = None,
        minimum: int = 1,
    ) -> int | None:
        value = self.typed(body, key, (int,), table, index)
        if value is not None and value < minimum:
            raise UserError(
                f"{self.where(key, table, index)}: {key} = {value} in "
                f"{self.place(table, index)}; it must be at least {minimum}"
            )
        return value


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside a quoted string is kept)."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _type(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a float",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _closest(key: str, keys: tuple[str, ...]) -> str | None:
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return match[0] if match else None


def _scoring(c: _Checker, body: dict[str, Any]) -> dict[str, Any]:
    """The ``[scoring]`` table: one key per field of ScoreOptions, checked as it defines it."""
    c.known(body, SCORING_KEYS, "scoring")
    out: dict[str, Any] = {}
    for option in OPTIONS:
        value: Any
        if option.choices is not None:
            value = c.choice(body, option.name, option.choices, "scoring")
        elif option.kind is bool:
            value = c.typed(body, option.name, (bool,), "scoring")
        elif option.kind is tuple:
            value = c.typed(body, option.name, (list,), "scoring")
            if value is not None:
                value = option.check(value, c.where(option.name, "scoring"))
        else:
            value = c.positive(body, option.name, "scoring", minimum=option.minimum or 1)
        if value is not None:
            out[option.name] = value
    defaults = ScoreOptions()
    try:
        check_window_options(
            out.get("max_length", defaults.max_length),
            out.get("window", defaults.window),
            out.get("stride", defaults.stride),
        )
    except UserError as exc:
        raise UserError(
            f"{c.where('window', 'scoring') if 'window' in body else c.name}: [scoring] {exc}"
        ) from None
    return out


def _run(c: _Checker, body: dict[str, Any]) -> RunSpec:
    c.known(body, RUN_KEYS, "run")
    dtype = c.choice(body, "dtype", DTYPE_CHOICES, "run") or "auto"
    device = c.typed(body, "device", (str,), "run") or "auto"
    device_map = c.typed(body, "device_map", (str,), "run")
    trust = c.typed(body, "trust_remote_code", (bool,), "run") or False
    return RunSpec(dtype, device, device_map, trust)


def _local_source(text: str, base: Path) -> str | None:
    """An absolute path when ``text`` names an existing local file or folder (or clearly a path)."""
    expanded = Path(text).expanduser()
    candidate = expanded if expanded.is_absolute() else base / expanded
    if candidate.exists() or text.startswith((".", "/", "~")):
        return str(candidate.resolve() if candidate.exists() else candidate)
    parts = expanded.parts
    if len(parts) > 1 and not expanded.is_absolute() and (base / parts[0]).is_dir():
        # "models/typo" beside a "models" folder is a mistyped path, not a hub id.
        return str(candidate)
    return None


def _model(c: _Checker, body: dict[str, Any], i: int, base: Path) -> ModelSpec:
    c.known(body, MODEL_KEYS, "models", i)
    ident = c.typed(body, "id", (str,), "models", i, required=True)
    if not ident.strip():
        raise UserError(
            f"{c.where('id', 'models', i)}: id in [[models]] #{i + 1} is empty; give a "
            "hub id or a local folder"
        )
    local = _local_source(ident, base)
    label = c.typed(body, "label", (str,), "models", i) or (Path(ident).name if local else ident)
    family = c.typed(body, "family", (str,), "models", i)
    revisions = c.typed(body, "revisions", (list,), "models", i)
    if revisions is not None:
        if not revisions:
            raise UserError(
                f"{c.where('revisions', 'models', i)}: revisions in [[models]] #{i + 1} "
                "is empty; drop the key for the default revision"
            )
        if not all(isinstance(r, str) and r for r in revisions):
            raise UserError(
                f"{c.where('revisions', 'models', i)}: revisions in [[models]] #{i + 1} "
                "must be non-empty strings"
            )
    dtype = c.choice(body, "dtype", DTYPE_CHOICES, "models", i)
    trust = c.typed(body, "trust_remote_code", (bool,), "models", i)
    return ModelSpec(
        ident,
        local or ident,
        label,
        family,
        tuple(revisions) if revisions else (None,),
        dtype,
        trust,
    )


def _dataset(c: _Checker, body: dict[str, Any], i: int, base: Path) -> DatasetSpec:
    c.known(body, DATASET_KEYS, "datasets", i)
    data = c.typed(body, "data", (str,), "datasets", i, required=True)
    if data in PRESETS or data.startswith("builtin:"):
        if data.startswith("builtin:") and data not in BUILTINS:
            raise UserError(
                f"{c.where('data', 'datasets', i)}: unknown built-in corpus {data!r}; "
                f"choose {' or '.join(BUILTINS)}"
            )
        source, default_label = data, data
    elif data.startswith(HUB_PREFIX):
        try:
            hub = hub_preset(data)
        except UserError as exc:
            raise UserError(f"{c.where('data', 'datasets', i)}: {exc}") from None
        source = data
        default_label = "-".join(
            part
            for part in (Path(hub.path).name, hub.name, None if hub.split == "train" else hub.split)
            if part
        )
    else:
        source = _local_source(data, base) or str(base / data)
        default_label = Path(data).stem or data
    label = c.typed(body, "label", (str,), "datasets", i) or default_label
    samples = c.positive(body, "samples", "datasets", i)
    seed = c.typed(body, "seed", (int,), "datasets", i)
    text_field = c.typed(body, "text_field", (str,), "datasets", i) or "text"
    return DatasetSpec(data, source, label, samples, seed, text_field)
