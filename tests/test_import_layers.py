"""Imports run one way: a module never imports a layer above its own, and no module imports itself
back through others. The layers are declared once, in the "Layers" table of docs/ARCHITECTURE.md.

Every import counts, the ones inside functions too (they hide cycles, they don't remove them).
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pyluz"
LAYERS = ["leaves", "core", "persistence", "features", "orchestration", "façade"]


def declared_layers():
    """{"pyluz.<module or package>": layer index} from the docs table (`| layer | modules |` rows)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[0].lower() not in LAYERS:
            continue
        for name in re.findall(r"`([a-z_.]+)`", cells[1]):
            table["pyluz" if name == "pyluz" else f"pyluz.{name}"] = LAYERS.index(cells[0].lower())
    return table


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name, table):
    """The layer of the longest declared prefix of `name` (a package entry covers its modules)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in table:
            return table[key]
    return None


def imports(name):
    """The pyluz modules `name` imports, anywhere in the file (function-level imports included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == "pyluz" or target.startswith("pyluz."):
                while target not in MODULES:  # `import pyluz.x.y` of a name: its module
                    target = target.rsplit(".", 1)[0]
                found.add(target)
    found.discard(name)
    return found


def test_every_module_has_a_layer():
    table = declared_layers()
    assert table, "docs/ARCHITECTURE.md has no Layers table"
    missing = [m for m in MODULES if layer_of(m, table) is None]
    assert not missing, f"modules without a layer in docs/ARCHITECTURE.md: {missing}"
    unknown = [m for m in table if m not in MODULES]
    assert not unknown, f"the Layers table names modules that don't exist: {unknown}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_from_a_layer_above(name):
    table = declared_layers()
    own = layer_of(name, table)
    above = sorted(f"{t} ({LAYERS[layer_of(t, table)]})" for t in imports(name) if layer_of(t, table) > own)
    assert not above, f"{name} ({LAYERS[own]}) imports a layer above its own: {above}"


def test_no_import_cycles():
    graph = {m: imports(m) for m in MODULES}
    for name in MODULES:  # importing a.b.c runs the package a.b first
        parent = name.rsplit(".", 1)[0]
        for target in list(graph[name]):
            pkg = target.rsplit(".", 1)[0]
            while pkg != "pyluz" and pkg.startswith("pyluz.") and pkg != name and pkg != parent:
                graph[name].add(pkg)
                pkg = pkg.rsplit(".", 1)[0]
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(MODULES):
        if name not in state:
            visit(name)


def test_the_walker_finds_function_level_imports():
    # The rule would be toothless if imports inside functions were missed.
    assert "pyluz.data" in imports("pyluz.callbacks.progress")
