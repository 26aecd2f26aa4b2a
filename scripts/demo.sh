#!/bin/sh
# make demo: the quickstart (a kdb Insights package and its deployment, a Pachyderm
# project of three pipelines) applied to the embedded sandbox; a plan that then shows
# "No changes."; a second apply that makes no call that changes anything; then two
# one-line changes, each touching exactly what it must: one pipeline restarts, one
# package component is deployed again alone; last, the markdown a pull request would get for a small
# change. Runs in .demo/ (a fresh copy, made a git repository of its own), so it can be
# run again and again; nothing outside .demo/ is touched.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
R="$BIN/reconciler"
DEMO=${DEMO:-.demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
edit() { # edit FILE OLD NEW: replace the first OLD by NEW in FILE
  sed "s|$2|$3|" "$1" > "$1.new" && mv "$1.new" "$1"
}

rm -rf "$DEMO"
mkdir -p "$DEMO"
cp -R examples/quickstart/. "$DEMO/"

step "validate: every manifest checked, nothing contacted"
"$R" validate "$DEMO"

step "doctor: each target reachable, authenticated, with the API the providers use"
"$R" doctor "$DEMO"

step "plan: what apply would do (exit code 2 = changes pending)"
"$R" plan "$DEMO" --detailed-exitcode || [ $? -eq 2 ]

step "apply: the package pushed and deployed; projects, repos, then pipelines upstream first"
"$R" apply "$DEMO" --yes

step "plan again: nothing to do, although pachd runs every pipeline with cluster defaults the manifests never wrote"
"$R" plan "$DEMO" --detailed-exitcode

step "apply again: no call that changes anything (mutating: 0, restarts: {})"
"$R" sandbox stats "$DEMO" --reset > /dev/null
"$R" apply "$DEMO" --yes
"$R" sandbox stats "$DEMO" --reset

step "change one pipeline's image: only that pipeline restarts"
edit "$DEMO/manifests/pachyderm.yaml" 'image: v4tech/imagemagick' 'image: v4tech/imagemagick:7'
"$R" plan "$DEMO" --detailed-exitcode || [ $? -eq 2 ]
"$R" apply "$DEMO" --yes
"$R" sandbox stats "$DEMO" --reset

step "change one file of the package: one push, then that one pipeline deployed again"
edit "$DEMO/packages/trades/src/trades-rt.q" 'Real-time ingest' 'Real-time ingest, tuned'
"$R" plan "$DEMO" --detailed-exitcode || [ $? -eq 2 ]
"$R" apply "$DEMO" --yes
"$R" sandbox stats "$DEMO" --reset

step "an administrator changes pachd's cluster defaults without regenerate: no restart"
cat > "$DEMO/manifests/defaults.yaml" <<'YAML'
apiVersion: pachyderm/v1
kind: ClusterDefaults
metadata: {name: cluster}
spec:
  createPipelineRequest:
    resourceRequests: {cpu: 1, memory: 512Mi, disk: 1Gi}
    sidecarResourceRequests: {cpu: 1, memory: 256Mi, disk: 1Gi}
  regenerate: false
YAML
"$R" plan "$DEMO" --detailed-exitcode || [ $? -eq 2 ]
"$R" apply "$DEMO" --yes
"$R" sandbox stats "$DEMO" --reset
"$R" plan "$DEMO" --detailed-exitcode

step "status: what reconciler manages on each target, its runs, and no drift"
"$R" status "$DEMO"

step "a pull request: the comment CI would post for a one-line change (plan --base main)"
g() { git -C "$DEMO" -c user.name=demo -c user.email=demo@example.com "$@"; }
printf '.reconciler/\n' > "$DEMO/.gitignore"
g init -q -b main
g add -A
g commit -q -m "the quickstart, as applied"
g switch -q -c faster-edges
edit "$DEMO/manifests/pachyderm.yaml" 'image: pachyderm/opencv:1.0' 'image: pachyderm/opencv:1.1'
g commit -q -a -m "edges: opencv 1.1"
"$R" plan "$DEMO" --base main --format markdown

step "the same, every day: serve, with a web UI of each resource's sync and health"
printf 'make ui starts reconciler serve on the quickstart and prints the address of its\n'
printf 'web UI and a token to log in with (then try suspend, sync now, and the graph).\n'
