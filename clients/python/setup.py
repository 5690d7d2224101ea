"""Builds the jobstream package, generating its gRPC stubs from proto/ as it does.

The stubs (jobstream/v1/*_pb2.py, *_pb2_grpc.py) are never committed: they come from the
.proto files of the tree the package is built from, with Debian's protoc and
grpc_python_plugin (packages protobuf-compiler and protobuf-compiler-grpc), so the package
always speaks the API of the server built beside it. JOBSTREAM_PROTO_DIR names another
proto/ directory; PROTOC and GRPC_PYTHON_PLUGIN other tools.
"""

import glob
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def proto_dir():
    given = os.environ.get("JOBSTREAM_PROTO_DIR")
    candidates = [given] if given else [os.path.join(HERE, "..", "..", "proto"),
                                        os.path.join(HERE, "proto")]
    for d in candidates:
        if os.path.isdir(os.path.join(d, "jobstream", "v1")):
            return os.path.abspath(d)
    raise SystemExit("jobstream: no proto/jobstream/v1 found (tried %s); build the package "
                     "from the jobstream tree, or set JOBSTREAM_PROTO_DIR" % ", ".join(candidates))


def tool(env, default):
    path = os.environ.get(env) or shutil.which(default) or ""
    if not os.path.exists(path):
        path = os.path.join("/usr/bin", default)
    if not os.path.exists(path):
        raise SystemExit("jobstream: %s not found: apt-get install protobuf-compiler "
                         "protobuf-compiler-grpc (or set %s)" % (default, env))
    return path


class BuildWithStubs(build_py):
    """build_py that first writes the stubs into the package's v1/ in the build dir."""

    def run(self):
        super().run()
        protos = proto_dir()
        out = self.build_lib
        files = sorted(glob.glob(os.path.join(protos, "jobstream", "v1", "*.proto")))
        subprocess.run([tool("PROTOC", "protoc"), "-I", protos, "--python_out=" + out,
                        "--grpc_out=" + out,
                        "--plugin=protoc-gen-grpc=" + tool("GRPC_PYTHON_PLUGIN",
                                                           "grpc_python_plugin")] + files,
                       check=True)


setup(cmdclass={"build_py": BuildWithStubs})
