"""Cron input specs as pachd parses them, so that a bad one is refused at file:line.

pachd parses a cron input's `spec` with `cronutil.ParseCronExpression`
(`src/internal/cronutil/cronutil.go`): `@never`, else robfig/cron (v1) `ParseStandard`:
five fields (minute, hour, day of month, month, day of week) or a descriptor (`@yearly`,
`@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every
<Go duration>`). A field is a comma-separated list of `*`, `?`, `N`, `N-M`, each with an
optional `/STEP`; months and weekdays may be named (`jan`, `mon`).
"""

from __future__ import annotations

import re

_DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_DURATION = re.compile(r"(?:[0-9]*\.?[0-9]+(?:ns|us|µs|ms|s|m|h))+\Z")


def cron_problem(spec: str) -> str | None:
    """Why pachd would refuse `spec`, or None."""
    text = spec.strip()
    if text == "@never" or text in _DESCRIPTORS:
        return None
    if text.startswith("@every"):
        duration = text.removeprefix("@every").strip()
        if not _DURATION.match(duration) or duration == "0":
            return f"'@every {duration}' needs a Go duration such as 30s, 5m or 1h30m"
        return None
    if text.startswith("@"):
        return f"unknown descriptor '{text}'"
    fields = text.split()
    if len(fields) != len(_FIELDS):
        return (
            "expected exactly 5 fields (minute hour day-of-month month day-of-week),"
            f" found {len(fields)}"
        )
    for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for part in value.split(","):
            problem = _part(part, low, high, names)
            if problem:
                return f"{name} '{value}': {problem}"
    return None


def _part(part: str, low: int, high: int, names: dict[str, int]) -> str | None:
    head, slash, step = part.partition("/")
    if slash and (not step.isdigit() or int(step) == 0):
        return f"step '{step}' is not a positive number"
    if head in ("*", "?"):
        return None
    start, dash, end = head.partition("-")
    bounds = []
    for piece in (start, end) if dash else (start,):
        number = names.get(piece.lower()) if piece.isalpha() else None
        if number is None:
            if not piece.isdigit():
                return f"'{piece}' is not a number"
            number = int(piece)
        if not low <= number <= high:
            return f"{number} is outside {low}-{high}"
        bounds.append(number)
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        return f"range {head} runs backwards"
    return None
