"""The package's layout: parts import one way (a layer never imports a higher one), and the
entry points stay light."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "metasel"

# Lower layers never import higher ones; parts in one layer never import each other.
LAYERS = [
    {"errors"},
    {"_schema", "_check", "_format", "_yaml", "plots"},
    {"domain"},
    {"spec"},
    {"data"},
    {"bench", "surrogate"},
    {"select"},
    {"evaluation"},
    {"app"},
    {"integrations"},
    {"cli"},
    {"testing"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
ENTRY = {"__init__", "__main__"}  # metasel/__init__.py (lazy re-exports) and python -m metasel


def _part(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 and bits[0] == "metasel" else None


def import_edges() -> set[tuple[str, str, str]]:
    """(importing part, imported part, file) for every import between parts, lazy ones included."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        me = rel.parts[1] if len(rel.parts) > 1 else None
        if me in ENTRY:
            continue
        package = ".".join(rel.parts[:-1]) if path.name != "__init__.py" else ".".join(rel.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    targets = [".".join(base + ([node.module] if node.module else []))]
                else:
                    targets = [node.module or ""]
                if targets == ["metasel"]:  # from metasel import X: X is a part, or a name of metasel/__init__
                    targets = [f"metasel.{a.name}" for a in node.names
                               if (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").is_file()]
            else:
                continue
            for target in targets:
                part = _part(target)
                if part and part != me and part not in ENTRY:
                    edges.add((me, part, str(rel)))
    return edges


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert parts - ENTRY <= set(RANK), f"parts without a layer: {sorted(parts - ENTRY - set(RANK))}"


def test_imports_flow_one_way():
    upward = sorted(f"{f}: {a} imports {b}" for a, b, f in import_edges() if RANK[a] <= RANK[b])
    assert not upward, "imports against the layering (a part may import only lower layers):\n" + "\n".join(upward)


def test_no_import_cycles_between_parts():
    graph: dict[str, set[str]] = {}
    for a, b, _ in import_edges():
        graph.setdefault(a, set()).add(b)

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    cycles = sorted(p for p in graph if reaches(p, p))
    assert not cycles, f"parts on an import cycle: {cycles}"


def test_entry_points_stay_light():
    code = ("import sys, metasel, metasel.cli; "
            "print(sorted(m for m in ('torch', 'jax', 'pandas', 'sklearn', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"import metasel / metasel.cli loaded {out}"
    code = "import sys, metasel.surrogate, metasel.select; print(sorted(m for m in ('torch', 'jax', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"the surrogate and select packages loaded {out} at import"
