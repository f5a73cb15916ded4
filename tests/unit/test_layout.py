"""The package's shape: folders are layers, the pipeline is pure, nothing imports upward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "stream_app"

# Lowest first; a module may import its own layer and those before it (README, "Development").
LAYERS = ["contracts", "models", "pipeline", "training", "config", "worker", "ops", "console", "lab", "cli"]
# What a pure step must not reach: I/O clients, the stream framework, the environment's settings.
PIPELINE_FORBIDDEN = ("confluent_kafka", "redis", "faust", "stream_app.config")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2:  # a top-level module: the shared base (contracts, errors), or the command line
        return "cli" if parts[1] == "cli" else "contracts"
    return parts[1]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if name.endswith("__main__") or name == "stream_app":
            continue
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_every_module_sits_in_a_known_layer() -> None:
    assert {layer_of(name) for name in modules()} <= set(LAYERS)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_upward_import(name: str) -> None:
    own = LAYERS.index(layer_of(name))
    upward = [
        target
        for target in imports(modules()[name])
        if target.startswith("stream_app.") and LAYERS.index(layer_of(target)) > own
    ]
    assert upward == [], f"{name} imports a layer above its own"


@pytest.mark.parametrize("name", sorted(n for n in modules() if layer_of(n) == "pipeline"))
def test_pipeline_steps_are_pure(name: str) -> None:
    reached = [t for t in imports(modules()[name]) if t.startswith(PIPELINE_FORBIDDEN)]
    assert reached == []


def test_no_import_cycle() -> None:
    # Every import counts here, lazy and TYPE_CHECKING ones too: a cycle is a cycle to a reader.
    graph = {name: {t for t in imports(path) if t in modules()} for name, path in modules().items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
