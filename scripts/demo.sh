#!/bin/sh
# make demo: the quickstart's Pachyderm project applied to the embedded sandbox, then a
# one-line change that restarts exactly one pipeline. Runs in .demo/ (a fresh copy), so
# it can be run again and again; nothing outside .demo/ is touched.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
R="$BIN/reconciler"
DEMO=${DEMO:-.demo}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$DEMO"
mkdir -p "$DEMO"
cp -R examples/quickstart/. "$DEMO/"
# The kdb Insights provider is not part of this build yet: the demo covers Pachyderm.
rm -f "$DEMO/manifests/insights.yaml"

step "validate: every manifest checked, nothing contacted"
"$R" validate "$DEMO"

step "plan: what apply would do (exit code 2 = changes pending)"
"$R" plan "$DEMO" --detailed-exitcode || [ $? -eq 2 ]

step "apply: projects, then repos, then pipelines upstream first"
"$R" apply "$DEMO" --yes

step "plan again: nothing to do, and no pipeline restarted"
"$R" plan "$DEMO" --detailed-exitcode
"$R" sandbox stats "$DEMO" --reset

step "change one pipeline's image: only that pipeline restarts"
sed 's|image: v4tech/imagemagick|image: v4tech/imagemagick:7|' \
  "$DEMO/manifests/pachyderm.yaml" > "$DEMO/manifests/pachyderm.yaml.new"
mv "$DEMO/manifests/pachyderm.yaml.new" "$DEMO/manifests/pachyderm.yaml"
"$R" plan "$DEMO" --detailed-exitcode || [ $? -eq 2 ]
"$R" apply "$DEMO" --yes
"$R" sandbox stats "$DEMO"
