"""The package's structure, read from its source with ``ast``.

* The import graph of our own modules has no cycle, neither at module level nor with the
  imports made inside functions.
* Every import goes to the same or a lower layer of :data:`LAYERS` (bottom to top); a module
  missing from the table fails, so a new module must be placed.
* An import inside a function, of one of our own modules, goes strictly down and only to a module
  that loads a heavy dependency (torch, transformers, datasets, triton, matplotlib) when it is
  imported: deferring that cost is the one reason for it. Anything else is a top-level import.
* ``import errorentropy.cli`` loads none of the heavy dependencies (the command line starts fast).
* No function is longer than :data:`MAX_FUNCTION_LINES` (from ``def`` to its last line, its
  docstring left out: examples there are documentation) unless :data:`LONG_FUNCTIONS` says why.
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

# Bottom to top. A module may import from its own layer or from one below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("1 foundations", ("errors", "storage", "options", "quantities", "version")),
    ("2 data", ("corpus", "windows")),
    ("3 models", ("provenance", "models")),
    ("4a head: what the paths share", ("head", "head.logits")),
    (
        "4b head: the torch paths, the fused kernels",
        ("head.chunked", "head.full", "head.fused_kernels"),
    ),
    ("4c head: the fused path", ("head.fused",)),
    ("4d head: choosing a path; per-token statistics from logits", ("head.select", "token_stats")),
    ("5 statistics", ("histogram", "profile", "tokens")),
    (
        "5b statistics over documents: resampling, convergence of EE with documents",
        ("bootstrap", "convergence"),
    ),
    ("6 scoring", ("engine", "distributed", "results", "api")),
    ("7 sweeps", ("cells", "spec", "claims", "costs", "sweep")),
    ("8 fits", ("powerlaw", "sweepfits", "fits", "tables")),
    ("9a figures (plain numbers to matplotlib)", ("figures",)),
    ("9b report", ("report",)),
    (
        "10 integrations: others' training and evaluation loops (histograms, sweep cells)",
        (
            "integrations",
            "integrations.torchmetrics",
            "integrations.lightning",
            "integrations.transformers",
        ),
    ),
    ("11 the package's public names", ("",)),  # errorentropy/__init__.py
    (
        "12 demo and test scaffolding",
        ("demo", "demo.pipeline", "demo.training", "demo.tokenizer", "testing"),
    ),
    (
        "13 command line",
        (
            "cli",
            "cli.args",
            "cli.score",
            "cli.sweep",
            "cli.fit",
            "cli.report",
            "cli.demo",
            "__main__",
        ),
    ),
]

HEAVY = frozenset({"torch", "transformers", "datasets", "triton", "matplotlib"})

MAX_FUNCTION_LINES = 60

# "module:qualified.name" -> why it may be longer than MAX_FUNCTION_LINES.
LONG_FUNCTIONS: dict[str, str] = {
    "errorentropy.head.fused_kernels:head_kernel": (
        "a Triton kernel is one compiled unit: its loads, masks and reductions cannot be split "
        "into Python helpers without changing what the compiler sees"
    ),
}


def _full(short: str) -> str:
    return f"{PACKAGE}.{short}" if short else PACKAGE


LAYER_OF: dict[str, int] = {
    _full(short): rank for rank, (_, modules) in enumerate(LAYERS) for short in modules
}


def _layer_name(module: str) -> str:
    return LAYERS[LAYER_OF[module]][0]


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
    assert {"errorentropy.histogram", "errorentropy.cli", "errorentropy.head.chunked"} <= MODULES
    assert any(i.in_function and i.ours for imports in IMPORTS.values() for i in imports)
    heavy = _loads_heavy()
    assert heavy["errorentropy.models"] and not heavy["errorentropy.errors"]


def test_every_module_has_a_layer():
    missing = sorted(MODULES - set(LAYER_OF))
    assert not missing, f"place these modules in a layer of LAYERS in {__file__}: {missing}"


def test_no_cycle_at_module_level():
    cycle = _find_cycle(_graph(with_functions=False))
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_with_function_level_imports():
    cycle = _find_cycle(_graph(with_functions=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_go_to_the_same_or_a_lower_layer():
    upward = [
        f"{i.where()} [{_layer_name(i.source)}] imports {i.target} [{_layer_name(i.target)}]"
        for imports in IMPORTS.values()
        for i in imports
        if i.ours and i.source in LAYER_OF and i.target in LAYER_OF
        if LAYER_OF[i.target] > LAYER_OF[i.source]
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_function_level_imports_only_defer_heavy_modules_below():
    heavy = _loads_heavy()
    wrong = []
    for imports in IMPORTS.values():
        for i in imports:
            if not (i.ours and i.in_function) or i.source not in LAYER_OF:
                continue
            if i.target not in LAYER_OF or LAYER_OF[i.target] >= LAYER_OF[i.source]:
                wrong.append(f"{i.where()} imports {i.target} inside a function, not from below")
            elif not heavy[i.target]:
                wrong.append(
                    f"{i.where()} imports {i.target} inside a function, but it loads none of "
                    f"{sorted(HEAVY)}: import it at the top"
                )
    assert not wrong, "\n".join(wrong)


def test_the_command_line_starts_without_heavy_dependencies():
    code = (
        "import sys, errorentropy.cli\n"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", f"import errorentropy.cli loaded {done.stdout.strip()}"


def _length(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's last line, less its docstring's."""
    assert function.end_lineno is not None
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str) and first.end_lineno is not None:
            lines -= first.end_lineno - first.lineno + 1
    return lines


def _function_lengths() -> dict[str, int]:
    lengths = {}
    for module, path in FILES.items():

        def visit(node: ast.AST, prefix: str, module: str = module) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = prefix + child.name
                    lengths[f"{module}:{name}"] = _length(child)
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")
                else:
                    visit(child, prefix)

        visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return lengths


def test_no_function_is_too_long():
    lengths = _function_lengths()
    assert "errorentropy.histogram:RankHistogram.decompose" in lengths  # the walk finds methods
    long = sorted(
        f"{name}: {n} lines"
        for name, n in lengths.items()
        if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS
    )
    assert not long, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps, or give a reason "
        f"in LONG_FUNCTIONS):\n" + "\n".join(long)
    )


def test_the_long_function_allowlist_is_current():
    lengths = _function_lengths()
    stale = [name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES]
    assert not stale, f"remove from LONG_FUNCTIONS (gone or short now): {stale}"
    assert all(reason.strip() for reason in LONG_FUNCTIONS.values())
