"""The package's layers import only downward (STYLE.md): checks -> ops -> kernels -> layers ->
models -> data -> train -> cli. Read statically from the source, so every module counts, also
those no test imports."""

from __future__ import annotations

import ast
from pathlib import Path

import ssm

ROOT = Path(ssm.__file__).parent
# rank of each top-level part of the package; a module may import parts of equal or lower rank
RANK = {"checks": 0, "optim": 0, "ops": 1, "hippo": 1, "kernels": 2, "layers": 3, "models": 4,
        "data": 5, "train": 6, "cli": 7, "__init__": 8}


def _part(module: str) -> str:
    """'ssm.kernels.dplr' -> 'kernels'; 'ssm' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """Absolute names of the ssm modules a file imports (module-level and inside functions)."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("ssm"):
                if node.module:  # from ..kernels.base import X
                    found.add(name)
                else:  # from .. import ops, hippo
                    found.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ssm"))
    return found


def test_every_module_imports_only_downward():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        mod = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        own = _part(mod)
        if own not in RANK:
            continue
        for name in _imports(path):
            other = _part(name)
            if other in RANK and RANK[other] > RANK[own]:
                wrong.append(f"{mod} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_rank_table_covers_the_package():
    parts = {p.stem if p.is_file() else p.name for p in ROOT.iterdir() if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert parts <= set(RANK), sorted(parts - set(RANK))
