#!/bin/sh
# Makes VENV and installs clients/python into it the way the README says (a venv that sees
# Debian's grpcio and protobuf, pip offline without build isolation), from a copy of the
# package so that nothing is written into the source tree.
set -eu
venv="${1:?usage: install_package.sh VENV}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$venv" "$venv.src"
/usr/bin/python3 -m venv --system-site-packages "$venv"
cp -r "$root/clients/python" "$venv.src"
rm -rf "$venv.src/build" "$venv.src"/src/*.egg-info
JOBSTREAM_PROTO_DIR="$root/proto" "$venv/bin/pip" install --quiet --no-index \
  --no-build-isolation "$venv.src"
rm -rf "$venv.src"
"$venv/bin/python" -c 'import jobstream, jobstream.v1.jobs_pb2_grpc; print("installed", jobstream.__version__)'
