#!/bin/sh
# make ui: `reconciler serve` on the quickstart and the embedded sandbox, with its web UI.
# Runs in .ui/ (a fresh copy, made a git repository of its own, so runs have revisions);
# prints the address and a one-time token to log in with; Ctrl-C stops it.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
UI=${UI:-.ui}
PORT=${PORT:-8080}
rm -rf "$UI"
mkdir -p "$UI"
cp -R examples/quickstart/. "$UI/"
printf '.reconciler/\n' > "$UI/.gitignore"
git -C "$UI" init -q -b main
git -C "$UI" add -A
git -C "$UI" -c user.name=ui -c user.email=ui@example.com commit -q -m "the quickstart"
RECONCILER_UI_TOKEN=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(12))')
export RECONCILER_UI_TOKEN
printf '\n  reconciler UI: http://127.0.0.1:%s/   token: %s\n' "$PORT" "$RECONCILER_UI_TOKEN"
printf '  (edit %s/manifests/*.yaml and press "Sync now"; Ctrl-C stops)\n\n' "$UI"
exec "$BIN/reconciler" serve "$UI" --mode apply --port "$PORT" --interval 1m
