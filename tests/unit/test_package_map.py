"""The package's layout stays what the README says: every module named in its map (and nothing named that is
gone), no import cycle inside `engine/`, and nothing at the root but the front door and the command shims."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "engine"
FRONT_DOOR = {"__init__.py", "__main__.py", "cli.py"}
COMMAND_SHIMS = {"analyze.py", "balance.py", "bench.py", "export.py", "pairwise.py"}


def modules_on_disk() -> set[tuple[str, str]]:
    """(folder relative to engine/, file name) of every Python module but package __init__ files."""
    found = set()
    for path in ENGINE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        folder = path.parent.relative_to(ENGINE).as_posix()
        found.add(("" if folder == "." else folder, path.name))
    return found


def modules_in_readme_map() -> set[tuple[str, str]]:
    """(folder, file name) of every module the README's "Where things live" table names."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Data path and where things live"):]
    section = section[: section.index("\n## ", 4)]
    named, folder = set(), None
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] in ("folder", "---"):
            continue
        if cells[0]:
            folder = cells[0].strip("`").rstrip("/")
            folder = "" if folder == "engine" else folder
        for module in re.findall(r"`([\w]+\.py)`", cells[1]):
            named.add((folder, module))
    return named


def test_readme_map_names_every_module_and_only_existing_ones():
    on_disk, named = modules_on_disk(), modules_in_readme_map()
    assert not on_disk - named, f"modules missing from the README's map: {sorted(on_disk - named)}"
    assert not named - on_disk, f"the README's map names modules that do not exist: {sorted(named - on_disk)}"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> engine modules it imports, at any depth of its code (a function-level import counts: it is a
    cycle all the same, only hidden)."""
    known = {module_name(p) for p in ENGINE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in ENGINE.rglob("*.py"):
        me = module_name(path)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from engine.recipes import specs` imports a submodule
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in known else node.module)
        graph[me] = {t for t in targets if t in known and t != me}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_in_engine():
    graph = import_graph()
    assert "engine.read.validate" in graph["engine.stages.autoif.augment"]  # the graph sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_hidden_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_root_holds_only_the_front_door_and_command_shims():
    root = {p.name for p in ENGINE.glob("*.py")}
    assert root == FRONT_DOOR | COMMAND_SHIMS
    for shim in COMMAND_SHIMS:
        text = (ENGINE / shim).read_text()
        command = shim.removesuffix(".py")
        assert (ENGINE / "commands" / shim).exists()
        assert f'runpy.run_module("engine.commands.{command}", run_name="__main__"' in text
        assert len(text.splitlines()) <= 5  # a shim, not a second home for the command's code
