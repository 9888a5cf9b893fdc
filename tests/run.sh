#!/usr/bin/env bash
# The whole test suite in one command, on a fresh Debian machine:
#   tests/run.sh            unit + integration tests (cargo test --workspace)
#   tests/run.sh --bench    ... then the benchmarks (benches/load.sh, benches/dicom.sh)
# Installs missing Debian packages first (curl, dcmtk, orthanc; nginx and wrk for --bench).
# Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "tests/run.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

# --- Debian packages the tests (and optionally the bench) need ------------------
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v echoscu >/dev/null 2>&1 || missing+=(dcmtk)
# tests/dicom_orthanc.rs starts its own Orthanc (temp config, free ports)
{ command -v Orthanc >/dev/null 2>&1 || [[ -x /usr/sbin/Orthanc ]]; } || missing+=(orthanc)
if [[ $bench == 1 ]]; then
  command -v nginx >/dev/null 2>&1 || missing+=(nginx)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
  [[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] || missing+=(libnginx-mod-http-lua)
fi
if ((${#missing[@]})); then
  echo "==> installing: ${missing[*]}"
  sudo=""
  if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
  # Wait for another apt/dpkg run instead of failing on its lock.
  $sudo apt-get -o DPkg::Lock::Timeout=600 update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null 2>&1 || { echo "tests/run.sh: cargo not found (install Rust: https://rustup.rs)" >&2; exit 1; }

# --- build, then run with a hard time limit -------------------------------------
echo "==> cargo build (tests)"
cargo test --workspace --no-run

echo "==> cargo test --workspace"
# Integration tests start the proxy on loopback ports; every wait inside is
# bounded, and this bounds the whole run as well.
timeout --signal=TERM --kill-after=30 "${TEST_TIMEOUT:-480}" \
  cargo test --workspace --no-fail-fast -- --color=never

if [[ $bench == 1 ]]; then
  echo "==> benches/load.sh"
  ROUNDS="${ROUNDS:-1}" DURATION="${DURATION:-3}" benches/load.sh
  echo "==> benches/dicom.sh"
  ROUNDS="${ROUNDS:-3}" benches/dicom.sh
fi
echo "==> all tests passed"
