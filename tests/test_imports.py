"""The package's imports run downward (DESIGN.md: cli -> metrics -> pipeline ->
ml -> relations / language) and form no circle. Read from the source with
`ast`, so imports inside functions count too."""
import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "spacy_mlre"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> List[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    # `from .x import y` may import the submodule x.y
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the spacy_mlre modules it imports (anywhere in its source)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph: Dict[str, Set[str]] = {}
    for path in paths:
        name = _module_name(path)
        targets: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                targets.update(_resolve(name, path.name == "__init__.py", node))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _is_package_init(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()


def test_models_import_nothing_above_them():
    graph = import_graph()
    upward = ("spacy_mlre.pipeline", "spacy_mlre.cli", "spacy_mlre.metrics", "spacy_mlre.corpus", "spacy_mlre.bags")
    wrong = {
        (module, target)
        for module, targets in graph.items() if module.startswith("spacy_mlre.ml")
        for target in targets if target.startswith(upward)
    }
    assert not wrong


def test_no_import_circle():
    graph = import_graph()
    # a package's __init__ importing its own submodules is not a circle of the design
    graph = {m: {t for t in ts if not (_is_package_init(t) and m.startswith(t + "."))} for m, ts in graph.items()}
    assert _cycles(graph) == []


def test_the_walk_sees_imports_inside_functions():
    """The checks above can fail: the walk finds a function-level import."""
    graph = import_graph()
    assert "spacy_mlre.ml.amnre.net" in graph["spacy_mlre.ml.models.amnre"]
    assert "spacy_mlre.ml.inputs" in graph["spacy_mlre.pipeline.candidates"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
