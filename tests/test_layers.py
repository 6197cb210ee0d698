"""The layering rules of docs/design.md, checked on the source (AST, no imports run).

- A module imports another subpackage only through its public names: never a private
  (``_``-prefixed) module of another subpackage.
- The data path runs one way: a subpackage imports only subpackages above it.
- The CLI imports public names only.
"""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "kipd"

# Each layer may import the layers listed before it (docs/design.md, "The data path").
LAYERS = ["files", "data", "kernels", "compute", "distill", "transfer", "analysis", "cli"]


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
