"""The layering rules of docs/design.md, checked on the source (AST, no imports run).

- A module imports another subpackage only through its public names: never a private
  (``_``-prefixed) module of another subpackage.
- The data path runs one way: a subpackage imports only subpackages above it.
- The CLI imports public names only.
- No import cycle, between subpackages or between the modules inside one.
"""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "kipd"

# Each layer may import the layers listed before it (docs/design.md, "The data path").
LAYERS = ["files", "data", "kernels", "compute", "distill", "runs", "transfer", "analysis", "cli"]


def _modules():
    return sorted(p for p in SOURCE.rglob("*.py"))


def _owner(path: Path) -> str:
    """The layer of a source file: its subpackage, or the top-level module's name."""
    parts = path.relative_to(SOURCE).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _imported(tree: ast.AST):
    """``(module, names)`` of every ``import`` / ``from ... import`` in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, tuple(alias.name for alias in node.names)


def _targets(module: str, names: tuple[str, ...]):
    """Every kipd module path an import reaches: ``from kipd.x import _y`` reaches
    ``kipd.x._y`` when ``_y`` is a module."""
    yield module.split(".")
    for name in names:
        candidate = SOURCE.joinpath(*module.split(".")[1:], name)
        if candidate.with_suffix(".py").is_file() or candidate.is_dir():
            yield [*module.split("."), name]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_imports_follow_the_layers(path):
    owner = _owner(path)
    tree = ast.parse(path.read_text())
    problems = []
    for module, names in _imported(tree):
        if not module.startswith("kipd"):
            continue
        for parts in _targets(module, names):
            if len(parts) < 2 or parts[1] == owner:
                continue
            target = parts[1]
            if any(part.startswith("_") for part in parts[1:]) and target != "__version__":
                problems.append(f"{'.'.join(parts)}: a private module of another subpackage")
            if target in LAYERS and owner in LAYERS and LAYERS.index(target) > LAYERS.index(owner):
                problems.append(f"{'.'.join(parts)}: {target} is below {owner} in the data path")
    assert not problems, f"{path.relative_to(SOURCE)}: " + "; ".join(problems)


def test_every_layer_is_known():
    owners = {_owner(path) for path in _modules()} - {"__init__"}
    assert owners <= set(LAYERS), owners - set(LAYERS)


def _module_name(path: Path) -> str:
    """``kipd.runs._rundir`` for ``src/kipd/runs/_rundir.py``; a package is its ``__init__``."""
    parts = ("kipd", *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """``{module: the kipd modules it imports}``, from every import statement of a module,
    those inside functions included: a deferred import closes a cycle all the same, only
    later. ``from package import name`` reaches ``package.name`` where that is a module,
    else ``package`` itself (its ``__init__``)."""
    modules = {_module_name(path): path for path in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}".rstrip(".")
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {target for target in edges if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each strongly connected knot of ``graph``,
    found by depth-first search."""
    state: dict[str, str] = {}  # "open" while on the search path, "done" after
    path: list[str] = []
    found = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    """The modules of kipd, packages' ``__init__`` included, import each other without a
    cycle: within a subpackage too, where the layer rules do not reach."""
    cycles = [" -> ".join(cycle) for cycle in _cycles(_import_graph())]
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
