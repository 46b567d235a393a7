"""The package's floors, checked: a module imports only modules on its own floor or below, and
no two modules import each other in a circle. A new module must be given its floor here (the
README's "Where things are" shows the same table)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "botcore"
FLOORS: list[set[str]] = [
    {"errors", "models", "attachments", "incoming", "reasoning", "clock", "i18n", "texts"},  # leaves
    {"prices", "personas", "config_reader", "config_scale", "config"},
    {"logs"},
    {"storage"},  # the protocols
    {"migrations", "sqlite_db"},  # the SQLite backend…
    {"sqlite_rows"},
    {"sqlite_jobs", "sqlite_data"},
    {"sqlite_storage"},
    {"pg_migrations", "pg_db"},  # …and the PostgreSQL one, for several processes
    {"pg_rows"},
    {"pg_jobs", "pg_data"},
    {"pg_storage"},
    {"group_commit"},
    {"jobqueue"},
    {  # adapters
        "pacing",
        "telegram_api",
        "formatting",
        "messenger",
        "streaming",
        "delivery",
        "openai_errors",
        "completion",
        "llm_params",
        "llm",
        "stt",
        "stt_local",
        "audio",
        "breaker",
        "cancels",
        "concurrency",
        "alerts",
        "catalog",
        "imagegen",
        "tts",
        "tts_local",
        "spool",
        "menus",
        "question",
        "vision",
        "courtesy",
        "receipts",
        "lockfile",
        "metrics",
        "images",
        "documents",
        "pdf_child",
    },
    # services
    {
        "spending",
        "notices",
        "acks",
        "prefs",
        "chat",
        "voice",
        "media",
        "drawing",
        "exporting",
        "speaking",
        "admin",
        "commands",
    },
    {"worker", "cleanup", "leading", "peers"},
    {"gate", "routing"},
    {"intake"},
    {"webhook"},
    {"health"},
    {"build"},
    {"assemble"},
    {"jobkinds"},
    {"app", "migrate_to_postgres"},  # the commands
]


def imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (at run time or not)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("botcore."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "botcore":
                deps |= {alias.name for alias in node.names if alias.name != "__version__"}
        graph[path.stem] = deps
    return graph


def test_every_module_has_a_floor_and_imports_only_downward() -> None:
    floor = {module: level for level, modules in enumerate(FLOORS) for module in modules}
    graph = imports()
    assert sorted(set(graph) - set(floor)) == [], "give these modules a floor"
    assert sorted(set(floor) - set(graph)) == [], "these modules are gone"
    upward = sorted((m, d) for m, deps in graph.items() for d in deps if floor[d] > floor[m])
    assert upward == []


def test_no_import_cycles() -> None:
    graph = imports()
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done
    cycles: list[list[str]] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                walk(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_the_layout_check_catches_an_upward_import() -> None:
    """The check itself can fail: a leaf that imported a service would be caught."""
    floor = {module: level for level, modules in enumerate(FLOORS) for module in modules}
    graph = imports()
    graph["incoming"] = graph["incoming"] | {"chat"}
    upward = [(m, d) for m, deps in graph.items() for d in deps if floor[d] > floor[m]]
    assert upward == [("incoming", "chat")]
