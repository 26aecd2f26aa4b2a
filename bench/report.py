"""bench/RESULTS.md holds one section per benchmark, each between markers, so that each
benchmark rewrites its own and leaves the others' as they were."""

from __future__ import annotations

import re
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def publish(out: Path, name: str, markdown: str) -> None:
    """Print `markdown`; a full run (its JSON written into bench/, not elsewhere as a
    quick run's is) also makes it the section `name` of bench/RESULTS.md."""
    if out.parent.resolve() == BENCH:
        put_section(BENCH / "RESULTS.md", name, markdown)
    print(markdown)


def put_section(path: Path, name: str, markdown: str) -> None:
    """Write `markdown` as the section `name` of `path`, in place of the one there."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block
    path.write_text(text)
