#!/bin/sh
# Generates the Python stubs of jobstream's API into DIR, with Debian's protoc and
# grpc_python_plugin (python3-grpc-tools is too old). Nothing generated is committed.
set -eu
out="${1:?usage: gen_stubs.sh DIR}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$out"
protoc -I "$root/proto" --python_out="$out" --grpc_out="$out" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin \
  "$root"/proto/jobstream/v1/*.proto
