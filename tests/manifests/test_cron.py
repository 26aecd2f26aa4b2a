"""Cron specs as pachd's robfig/cron ParseStandard reads them (cronutil.go)."""

from __future__ import annotations

import pytest

from reconciler.providers.pachyderm.cron import cron_problem


@pytest.mark.parametrize(
    "spec",
    [
        "*/10 * * * *",
        "0 9-17 * * mon-fri",
        "15,45 */2 1 jan,jul ?",
        "@every 1h30m",
        "@every 90s",
        "@daily",
        "@never",
        "0 0 1-31/2 * 0",
    ],
)
def test_what_pachd_parses_is_accepted(spec: str) -> None:
    assert cron_problem(spec) is None


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("*/10 * * *", "exactly 5 fields"),
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("* * * * 7", "outside 0-6"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards"),
        ("@every", "Go duration"),
        ("@every ten minutes", "Go duration"),
        ("@sometimes", "unknown descriptor"),
        ("x * * * *", "not a number"),
    ],
)
def test_what_pachd_refuses_is_refused(spec: str, why: str) -> None:
    problem = cron_problem(spec)
    assert problem is not None and why in problem
