#!/bin/sh
# Regenerates the web UI's screenshots that README shows (docs/images/ui-*.png), from the
# browser test: a serve of the quickstart on the sandbox, applied, drifted and crashed.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RECONCILER_SCREENSHOTS="$(pwd)/docs/images" "$BIN/python" -m pytest -q -p no:randomly \
  tests/server/test_ui_browser.py -k chromium
ls -1 docs/images/ui-*.png
