"""The written rules match the building: every package of reconciler is in the layers
contract of pyproject.toml, and the layer number its docstring states agrees with the
contract's order."""

from __future__ import annotations

import importlib
import re
import tomllib

from tests.conftest import ROOT

LAYER = re.compile(r"Layer (\d+)\b")


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _layers() -> list[list[str]]:
    """The layers contract, bottom first, each line split into its modules."""
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    lines = layers["layers"]
    assert isinstance(lines, list)
    return [[m.strip().strip("()") for m in line.split("|")] for line in reversed(lines)]


def _number(module: str) -> int:
    doc = importlib.import_module(module).__doc__ or ""
    found = LAYER.match(doc)
    assert found, f"{module}'s docstring does not start with 'Layer N'"
    return int(found.group(1))


def test_no_layer_is_optional() -> None:
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    assert all("(" not in line for line in layers["layers"]), (  # type: ignore[attr-defined]
        "an optional layer stops being checked when it is renamed"
    )


def test_every_package_has_a_place_in_the_layers() -> None:
    placed = {module for line in _layers() for module in line}
    found = {
        f"reconciler.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "reconciler").iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists())
        and path.name not in ("__init__.py", "__main__.py", "providers")
    }
    found |= {
        f"reconciler.providers.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "reconciler" / "providers").iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists()) and path.name != "__init__.py"
    }
    assert sorted(found - placed) == [], "packages outside every layer"
    assert sorted(placed - found) == [], "layers naming no package"


def test_each_docstring_states_the_layer_the_contract_gives_it() -> None:
    numbers = [[_number(module) for module in line] for line in _layers()]
    for line, found in zip(_layers(), numbers, strict=True):
        assert len(set(found)) == 1, f"one line of the contract, several layers: {line} {found}"
    flat = [found[0] for found in numbers]
    assert flat == sorted(flat), f"layer numbers go down somewhere up the contract: {flat}"
    assert flat[0] == 0 and flat[-1] == 8
