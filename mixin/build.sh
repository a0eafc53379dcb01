#!/usr/bin/env bash
# Renders the monitoring mixin into alerts/*.yml and dashboards/*.json (`make mixin`).
# With an argument, writes below that directory instead of the repository (the staleness test
# in collector/tests/api/pack.rs renders into a temporary directory and compares).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/..}"
jsonnet="${JSONNET:-jsonnet}"
mkdir -p "$out/alerts" "$out/dashboards"
"$jsonnet" -J "$here" -S -m "$out" "$here/build.jsonnet" >/dev/null
