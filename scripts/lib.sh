# Shared by run.sh and test.sh: install what is missing, then build.
# Debian 12 packages only; apt-get update runs once, and only if something is missing.

JOBSTREAM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$JOBSTREAM_ROOT/build}"
FUZZ_BUILD_DIR="${FUZZ_BUILD_DIR:-$JOBSTREAM_ROOT/build-fuzz}"
FUZZ_TARGETS=(request_fuzzer config_fuzzer program_line_fuzzer keys_fuzzer tokens_fuzzer cron_fuzzer)

APT_PACKAGES=(
  cmake ninja-build g++ pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev libgtest-dev libgmock-dev
  libboost1.81-dev libboost-url1.81-dev libssl-dev
  libpq-dev postgresql-15
)

# Optimised, with line tables only (-g1): enough for backtraces, sanitizer reports and
# perf, and a quarter less compile time than -g's full debug info (webhook_sender.cc: 52 s
# to 38 s). For a debugger's view of variables, configure a build of your own with -g.
RELWITHDEBINFO_FLAGS="-O2 -g1 -DNDEBUG"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() {  # PKG: whether Debian's package PKG is installed
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_missing() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}" "$@"; do
    installed "$pkg" || missing+=("$pkg")
  done
  # Node and npm may come from elsewhere than Debian; only their absence matters.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

# build [TARGET...]: those targets (run.sh: the three programs it starts), or everything.
build() {
  echo "== building ${*:-everything} in $BUILD_DIR"
  # Warnings are errors in every build here (the toolchain is Debian 12's): a build that
  # CI would refuse is refused on a developer's machine too.
  cmake -S "$JOBSTREAM_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$RELWITHDEBINFO_FLAGS" -DJOBSTREAM_WERROR=ON >/dev/null
  ninja -C "$BUILD_DIR" -j2 "$@"
}

# The fuzz targets, built by clang 14 with libFuzzer, ASan and UBSan (everything they link
# is instrumented too), in a build directory of their own.
# `build_fuzz all` builds every target there (the sanitizer suite), not only those.
build_fuzz() {
  echo "== building ${1:-the fuzz targets} in $FUZZ_BUILD_DIR (clang 14, ASan + UBSan)"
  CC=clang-14 CXX=clang++-14 cmake -S "$JOBSTREAM_ROOT" -B "$FUZZ_BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$RELWITHDEBINFO_FLAGS" \
    -DJOBSTREAM_FUZZ=ON >/dev/null
  if [ "${1:-}" = all ]; then
    ninja -C "$FUZZ_BUILD_DIR" -j2
  else
    ninja -C "$FUZZ_BUILD_DIR" -j2 "${FUZZ_TARGETS[@]}"
  fi
}
