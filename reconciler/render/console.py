"""Text for a rich console from anything a manifest, a platform or a file name said."""

from __future__ import annotations

from rich.markup import escape

from reconciler.errors import printable


def console_text(text: str) -> str:
    """`text` as a console line shows it: its control characters as escapes (it cannot
    start a line of its own in a CI log, nor drive the terminal), and its square
    brackets as text, not rich markup."""
    return escape(printable(text))
