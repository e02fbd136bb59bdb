"""The package's structure, read from its source with ``ast``: the folders are the layers.

* Each module lives in a *room*: the folder directly under the package that holds it (``stats``
  for ``errorentropy.stats.histogram``), or, for a module at the top, its own name. :data:`ORDER`
  lists the rooms bottom to top, in one place; a room missing from it fails, so a new folder must
  be placed.
* A module imports only from its own room or from rooms below it, and the import graph of our own
  modules has no cycle, neither at module level nor with the imports made inside functions.
* An import inside a function, of one of our own modules, goes to the same room or below, and only
  to a module that loads a heavy dependency (torch, transformers, datasets, triton, matplotlib)
  when it is imported: deferring that cost is the one reason for it.
* ``stats/`` is the mathematics on plain numbers: it imports the standard library, numpy, scipy
  and the foundations only (:data:`STATS_EXCEPTIONS` names each deferred import that bridges to
  torch, with its reason).
* ``import errorentropy.cli`` loads none of the heavy dependencies (the command line starts fast).
* No function is longer than :data:`MAX_FUNCTION_LINES`, no class than :data:`MAX_CLASS_LINES`, no
  module than :data:`MAX_MODULE_LINES`, unless :data:`LONG` says why.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import errorentropy

PACKAGE = "errorentropy"
SOURCE = Path(errorentropy.__file__).resolve().parent

# The rooms, bottom to top. A tuple holds rooms of one layer (they may import each other, no cycle).
ORDER: list[tuple[str, ...]] = [
    ("errors", "version", "storage", "options"),  # foundations: what every layer may use
    ("data",),  # corpora and windows
    ("models",),  # loading, provenance
    ("head",),  # logits to (rank, log-prob) per token: chunked, full, fused, token_stats
    ("stats",),  # histogram, decomposition, token tables, bootstrap, entropy estimators
    ("objectives",),  # training losses built from the decomposition
    ("scoring",),  # engine, torchrun sharding, result folders, the Python API
    ("sweep",),  # spec, cells, claims, costs, the run
    ("fits",),  # power laws and the fits.json record
    ("report",),  # tables, figures, the page
    ("integrations",),  # others' training loops: torchmetrics, Lightning, the HF Trainer
    ("",),  # the package's public names (errorentropy/__init__.py)
    ("demo", "testing"),  # the offline demo; tiny models for tests
    ("cli", "__main__"),  # the command line
]

HEAVY = frozenset({"torch", "transformers", "datasets", "triton", "matplotlib"})
FOUNDATIONS = frozenset(ORDER[0])
STATS_THIRD_PARTY = frozenset({"numpy", "scipy"})

# "module -> target": why a module of stats/ may import it (inside a function).
STATS_EXCEPTIONS: dict[str, str] = {
    "errorentropy.stats.histogram -> errorentropy.head.token_stats": (
        "RankHistogram.update(logits, labels) is the user's one-line bridge from a [B, T, V] "
        "tensor; the torch work (ranks, log-softmax) lives in head/ and is imported only when "
        "update is called, so the value type itself needs numpy alone"
    ),
}

MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 200
MAX_MODULE_LINES = 600

# "module" or "module:qualified.name" -> why it may be longer than its limit.
LONG: dict[str, str] = {
    "errorentropy.head.fused_kernels:head_kernel": (
        "a Triton kernel is one compiled unit: its loads, masks and reductions cannot be split "
        "into Python helpers without changing what the compiler sees"
    ),
    "errorentropy.stats.histogram:RankHistogram": (
        "the value type's whole algebra (build, +, save/load, decompose, rbp, mrr) in one place; "
        "its file form is sparse arrays with validation, which the field-per-key record helper "
        "(storage.to_record) does not express"
    ),
}


RANK: dict[str, int] = {room: rank for rank, rooms in enumerate(ORDER) for room in rooms}


def room_of(module: str) -> str:
    """The folder directly under the package that holds ``module``, or its own top-level name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module: str) -> int:
    return RANK[room_of(module)]


@dataclass(frozen=True)
class Import:
    """One import statement's target: ours (a module of the package) or a third party's."""

    source: str
    target: str  # a module of ours, or the top-level name of a third-party module
    ours: bool
    in_function: bool
    line: int

    def where(self) -> str:
        return f"{self.source} (line {self.line})"


def _module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join([PACKAGE, *parts])] = path
    return files


FILES = _module_files()
MODULES = frozenset(FILES)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, bool]]:
    """The modules one statement imports, each with whether it is ours."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [
            (n, True) if n.split(".")[0] == PACKAGE else (n.split(".")[0], False) for n in names
        ]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != PACKAGE:
            return [(base.split(".")[0], False)]
    else:
        package = module if FILES[module].name == "__init__.py" else module.rpartition(".")[0]
        parts = package.split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    # `from package import name`: the submodule when `name` is one, else the module itself.
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    if len(found) < len(node.names):
        found.append(base)
    return [(target, True) for target in found]


def _imports(module: str) -> list[Import]:
    """Every import `module` makes when it runs (``if TYPE_CHECKING:`` blocks left out)."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(stmt, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target, ours in _targets(module, child):
                    found.append(Import(module, target, ours, in_function, child.lineno))
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, nested)

    visit(ast.parse(FILES[module].read_text(encoding="utf-8")), False)
    return found


IMPORTS: dict[str, list[Import]] = {module: _imports(module) for module in sorted(MODULES)}


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _loads_heavy() -> dict[str, bool]:
    """Whether importing each module of ours loads a heavy dependency (its parent packages and
    its module-level imports, followed transitively)."""
    direct = {
        m: any(not i.ours and i.target in HEAVY and not i.in_function for i in imports)
        for m, imports in IMPORTS.items()
    }
    loaded = {
        m: {i.target for i in imports if i.ours and not i.in_function} | set(_parents(m))
        for m, imports in IMPORTS.items()
    }
    heavy = {}
    for start in MODULES:
        seen, stack = {start}, [start]
        while stack:
            for nxt in loaded[stack.pop()] & MODULES - seen:
                seen.add(nxt)
                stack.append(nxt)
        heavy[start] = any(direct[m] for m in seen)
    return heavy


def _graph(with_functions: bool) -> dict[str, set[str]]:
    return {
        m: {i.target for i in imports if i.ours and (with_functions or not i.in_function)}
        for m, imports in IMPORTS.items()
    }


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_sources_were_read():
    # Guards the tests below against passing on an empty or misread package.
    assert {
        "errorentropy.stats.histogram",
        "errorentropy.cli",
        "errorentropy.head.chunked",
    } <= MODULES
    assert any(i.in_function and i.ours for imports in IMPORTS.values() for i in imports)
    heavy = _loads_heavy()
    assert heavy["errorentropy.models.loading"] and not heavy["errorentropy.errors"]


def test_every_room_has_a_place_in_the_order():
    rooms = {room_of(m) for m in MODULES}
    missing = sorted(rooms - set(RANK))
    assert not missing, f"place these folders or modules in ORDER in {__file__}: {missing}"
    stale = sorted(set(RANK) - rooms)
    assert not stale, f"remove from ORDER (no such folder or module): {stale}"


def test_no_cycle_at_module_level():
    cycle = _find_cycle(_graph(with_functions=False))
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_with_function_level_imports():
    cycle = _find_cycle(_graph(with_functions=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _ours() -> list[Import]:
    return [i for imports in IMPORTS.values() for i in imports if i.ours]


def test_imports_go_to_the_same_or_a_lower_room():
    upward = [
        f"{i.where()} [{room_of(i.source) or 'errorentropy'}] imports {i.target} "
        f"[{room_of(i.target) or 'errorentropy'}]"
        for i in _ours()
        if _rank(i.target) > _rank(i.source)
    ]
    assert not upward, "imports from a higher room (see ORDER):\n" + "\n".join(upward)


def test_function_level_imports_only_defer_heavy_modules():
    heavy = _loads_heavy()
    wrong = []
    for i in _ours():
        if not i.in_function:
            continue
        if not heavy[i.target]:
            wrong.append(
                f"{i.where()} imports {i.target} inside a function, but it loads none of "
                f"{sorted(HEAVY)}: import it at the top"
            )
    assert not wrong, "\n".join(wrong)


def test_stats_needs_numpy_and_scipy_only():
    allowed = STATS_THIRD_PARTY | set(sys.stdlib_module_names)
    wrong = []
    for module, imports in IMPORTS.items():
        if room_of(module) != "stats":
            continue
        for i in imports:
            if not i.ours and i.target not in allowed:
                wrong.append(f"{i.where()} imports {i.target}")
            elif i.ours and room_of(i.target) not in {"stats", *FOUNDATIONS}:
                if f"{module} -> {i.target}" not in STATS_EXCEPTIONS or not i.in_function:
                    wrong.append(f"{i.where()} imports {i.target}")
    assert not wrong, "stats/ imports beyond numpy, scipy and the foundations:\n" + "\n".join(wrong)
    used = {f"{i.source} -> {i.target}" for i in _ours() if room_of(i.source) == "stats"}
    assert set(STATS_EXCEPTIONS) <= used, "STATS_EXCEPTIONS names imports that are gone"


def test_the_command_line_starts_without_heavy_dependencies():
    code = (
        "import sys, errorentropy.cli\n"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", f"import errorentropy.cli loaded {done.stdout.strip()}"


def _span(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    """Lines from ``def``/``class`` to the last line, less the docstring's."""
    assert node.end_lineno is not None
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str) and first.end_lineno is not None:
            lines -= first.end_lineno - first.lineno + 1
    return lines


def _sizes() -> dict[str, tuple[str, int]]:
    """``module`` or ``module:qualified.name`` -> (kind, lines), for every module, class and
    function of the package."""
    sizes: dict[str, tuple[str, int]] = {}
    for module, path in FILES.items():
        text = path.read_text(encoding="utf-8")
        sizes[module] = ("module", len(text.splitlines()))

        def visit(node: ast.AST, prefix: str, module: str = module) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = prefix + child.name
                    kind = "class" if isinstance(child, ast.ClassDef) else "function"
                    sizes[f"{module}:{name}"] = (kind, _span(child))
                    visit(child, name + ".")
                else:
                    visit(child, prefix)

        visit(ast.parse(text), "")
    return sizes


LIMITS = {"function": MAX_FUNCTION_LINES, "class": MAX_CLASS_LINES, "module": MAX_MODULE_LINES}


def test_nothing_is_too_long():
    sizes = _sizes()
    assert sizes["errorentropy.stats.histogram:RankHistogram.decompose"][0] == "function"
    assert sizes["errorentropy.stats.histogram:RankHistogram"][0] == "class"
    long = sorted(
        f"{name}: {kind} of {n} lines (limit {LIMITS[kind]})"
        for name, (kind, n) in sizes.items()
        if n > LIMITS[kind] and name not in LONG
    )
    assert not long, (
        "split these into named steps or modules, or give a reason in LONG:\n" + "\n".join(long)
    )


def test_the_long_allowlist_is_current():
    sizes = _sizes()
    stale = [name for name in LONG if name not in sizes or sizes[name][1] <= LIMITS[sizes[name][0]]]
    assert not stale, f"remove from LONG (gone or short now): {stale}"
    assert all(reason.strip() for reason in LONG.values())
