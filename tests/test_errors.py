"""Every exception reconciler raises on purpose belongs to the one drawn tree
(`reconciler.errors`), as httpx checks its own: a new class outside it, or missing from
the drawing, fails here."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import reconciler
from reconciler import errors
from reconciler.errors import BadValue, InputError, OperationalError, ReconcilerError


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(reconciler.__path__, "reconciler."):
        if module.name.startswith("reconciler.sandbox") or module.name.endswith("__main__"):
            continue  # the sandbox's exceptions are answers it builds, never leaving it
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
            ):
                found[f"{module.name}.{name}"] = value
    return found


CLASSES = _exception_classes()


def test_the_walk_finds_the_classes_defined_outside_errors_py() -> None:
    names = {cls.__name__ for cls in CLASSES.values()}
    assert {"HttpError", "LockedError", "VariableError", "PackageFileError"} <= names


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_exception_derives_from_the_tree_and_is_drawn(name: str) -> None:
    cls = CLASSES[name]
    assert issubclass(cls, ReconcilerError), f"{name} is outside the tree"
    if not cls.__name__.startswith("_"):  # private ones are caught where they are raised
        assert f" {cls.__name__} " in (errors.__doc__ or ""), f"{name} is not in the drawing"


def test_exit_codes_follow_the_branches() -> None:
    for cls in CLASSES.values():
        if issubclass(cls, InputError | BadValue):
            assert cls.exit_code == 3
        elif issubclass(cls, OperationalError):
            assert cls.exit_code == 1
            assert cls.retryable == issubclass(cls, errors.RetryableError)
