#!/usr/bin/env bash
# Contract checks: buf lint, and buf breaking against the previous published version of protos/.
#
# "Previous version" is the parent of the newest commit that changed protos/: on a clean clone
# of main that is the contract before its latest change; with uncommitted changes to protos/,
# those are checked too. Breaking a field number, name or type fails here, before any client
# in another language finds out.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=tools/buf/node_modules/.bin/buf
"$buf" lint
echo "buf lint: clean"
latest=$(git log -1 --format=%H -- protos buf.yaml)
if previous=$(git rev-parse --verify --quiet "${latest}^"); then
  "$buf" breaking --against ".git#ref=${previous}"
  echo "buf breaking: no breaking change against ${previous:0:12} (the contracts before ${latest:0:12})"
else
  echo "buf breaking: ${latest:0:12} is the first version of the contracts; nothing to compare"
fi
