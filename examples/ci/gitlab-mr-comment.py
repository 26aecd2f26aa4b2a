"""Create or update the one reconciler note on a GitLab merge request.

    python3 gitlab-mr-comment.py plan.md

Reads the note body from the file (reconciler plan --format markdown); finds the note of
the merge request that starts with <!-- reconciler-plan --> and updates it, or creates
it. Uses GitLab's predefined CI variables (CI_API_V4_URL, CI_PROJECT_ID,
CI_MERGE_REQUEST_IID) and a token with the api scope in RECONCILER_GITLAB_API_TOKEN.
Standard library only: it runs in any image that has Python.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MARKER = "<!-- reconciler-plan -->"


def call(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("PRIVATE-TOKEN", token)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def main(path: str) -> int:
    body = Path(path).read_text(encoding="utf-8")
    if not body.strip():
        print("no plan to post (the plan printed nothing)")
        return 0
    token = os.environ.get("RECONCILER_GITLAB_API_TOKEN")
    if not token:
        print("RECONCILER_GITLAB_API_TOKEN is not set: the plan is not posted", file=sys.stderr)
        return 1
    api = os.environ["CI_API_V4_URL"].rstrip("/")
    project = urllib.parse.quote(os.environ["CI_PROJECT_ID"], safe="")
    notes = f"{api}/projects/{project}/merge_requests/{os.environ['CI_MERGE_REQUEST_IID']}/notes"
    page = 1
    while True:
        found = call("GET", f"{notes}?per_page=100&page={page}&sort=asc", token)
        for note in found:
            if str(note.get("body", "")).startswith(MARKER):
                call("PUT", f"{notes}/{note['id']}", token, {"body": body})
                print(f"updated note {note['id']}")
                return 0
        if len(found) < 100:
            break
        page += 1
    created = call("POST", notes, token, {"body": body})
    print(f"created note {created['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
