# Shell functions shared by benches/load.sh and benches/dicom.sh; sourced
# (not run) after `set -euo pipefail` and `cd` to the repository root, with
# BENCH set to the script's name (for messages).

die() { echo "$BENCH: $*" >&2; exit 1; }
note() { echo "$BENCH: $*" >&2; }

# bench_args "$@": -h/--help prints the script's header comment (from line 2
# up to `set -euo`) and exits; any other argument is an error.
bench_args() {
  case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "$BENCH: unknown argument: $1 (try -h)" >&2; exit 2 ;;
  esac
}

# ---------------------------------------------------------------- temp dir + cleanup
# bench_workdir PREFIX: WORK = a new /tmp/PREFIX.XXXXXX; on exit every PID in
# PIDS gets SIGTERM (then SIGKILL after 5 s) and WORK plus the dirs in
# CLEAN_DIRS are removed (KEEP=1 keeps them).
PIDS=()
CLEAN_DIRS=()
bench_workdir() {
  WORK="$(mktemp -d "/tmp/$1.XXXXXX")"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -z "${KEEP:-}" ]]; then
    rm -rf "$WORK" "${CLEAN_DIRS[@]}"
  else
    note "kept $WORK ${CLEAN_DIRS[*]}"
  fi
}

# ---------------------------------------------------------------- ports
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A loopback port nobody listens on, below the kernel's ephemeral range (so no
# outgoing connection on this busy machine takes it before we bind it), and
# not handed out before in this run.
USED_PORTS=" "
PORT_HI=$(awk '{ print ($1 > 21000 ? $1 - 1 : 60000) }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 60000)
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % (PORT_HI - 20000)))
    [[ $USED_PORTS == *" $p "* ]] && continue
    port_open "$p" && continue
    USED_PORTS+="$p "
    echo "$p"; return
  done
}

# wait_port PORT PID: up to 10 s for PORT to accept; fail if PID dies (also
# just after: then PORT belonged to someone else and PID failed to bind it).
wait_port() {
  local i
  for i in $(seq 200); do
    if port_open "$1"; then sleep 0.1; kill -0 "$2" 2>/dev/null; return; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------- harmony
# build_harmony: `cargo build --release` unless SKIP_BUILD is set; HARMONY_BIN
# is target/release/harmony, HARMONY_OK=0 (with a SKIP note) if the build
# failed or the binary is missing.
build_harmony() {
  HARMONY_BIN="$ROOT/target/release/harmony"
  HARMONY_OK=1
  if [[ -z "${SKIP_BUILD:-}" ]]; then
    note "cargo build --release"
    if ! cargo build --release --bin harmony >"$WORK/build.log" 2>&1; then
      note "SKIP harmony: cargo build --release failed (last lines below)"
      tail -n 15 "$WORK/build.log" >&2
      HARMONY_OK=0
    fi
  fi
  [[ -x $HARMONY_BIN ]] || { [[ $HARMONY_OK == 0 ]] || note "SKIP harmony: $HARMONY_BIN missing"; HARMONY_OK=0; }
}

# harmony_head NAME: the [proxy] and [logging] sections of every benchmark
# harmony (one worker, scripts in NAME's scripts/, no access log).
harmony_head() {
  cat <<EOF
[proxy]
id = "$1"
workers = 1
log_level = "warn"
scripts_path = "scripts"
watch = false

[logging]
access_log = false
EOF
}

# lua_middleware NAME SCRIPT: a [middleware.NAME] section running SCRIPT.
lua_middleware() {
  cat <<EOF

[middleware.$1]
type = "lua"
options = { script = "$2" }
EOF
}

# spawn_harmony NAME PORT: start harmony with $WORK/NAME/harmony.toml (stderr
# in $WORK/NAME/stderr, on PROXY_CPU); HARMONY_PID is its PID. Fails if
# PORT does not accept within 10 s.
spawn_harmony() {
  $PROXY_CPU "$HARMONY_BIN" -c "$WORK/$1/harmony.toml" 2>"$WORK/$1/stderr" >/dev/null &
  HARMONY_PID=$!
  PIDS+=("$HARMONY_PID")
  wait_port "$2" "$HARMONY_PID"
}

# ---------------------------------------------------------------- reference relay
# build_c NAME: compile benches/NAME.c into $WORK/NAME and print its path;
# prints nothing (with a note) when no C compiler is found or it fails.
build_c() {
  local cc
  for cc in cc gcc clang; do command -v "$cc" >/dev/null 2>&1 && break; cc=""; done
  if [[ -z $cc ]]; then note "$1 not used (no C compiler)"; return 0; fi
  if "$cc" -O2 -o "$WORK/$1" "$ROOT/benches/$1.c" 2>"$WORK/$1.build.log"; then
    echo "$WORK/$1"
  else
    note "$1 not used: $cc failed:"; cat "$WORK/$1.build.log" >&2
  fi
}

# build_tcp_relay: compile benches/tcp_relay.c (the zero-work TCP relay, the
# ceiling for any user-space proxy) into $WORK; RELAY_BIN is empty (with a
# note) when NO_RELAY is set or no C compiler is found.
build_tcp_relay() {
  RELAY_BIN=""
  [[ -z "${NO_RELAY:-}" ]] || return 0
  RELAY_BIN=$(build_c tcp_relay)
}

# spawn_tcp_relay BACKEND_PORT: start it on PROXY_CPU on a free port (a few
# tries: a port can be taken between free_port and bind); RELAY_PID and
# RELAY_PORT. Fails if it never listens.
spawn_tcp_relay() {
  local try
  for try in 1 2 3 4 5; do
    RELAY_PORT=$(free_port)
    $PROXY_CPU "$RELAY_BIN" "$RELAY_PORT" "$1" >"$WORK/tcp_relay.log" 2>&1 &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    if wait_port "$RELAY_PORT" "$RELAY_PID"; then return 0; fi
    kill -KILL "$RELAY_PID" 2>/dev/null || true
  done
  return 1
}

# ---------------------------------------------------------------- CPU time
# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks
# (CLK_TCK per second); 0 if it is gone.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------- CPU pinning
# pin_cpus WHAT: with PIN unset or 1, taskset and 2+ cores, CLIENT_CPU
# ("taskset -c 0") and PROXY_CPU ("taskset -c 1") prefix the commands; WHAT
# says who runs where. PIN=one puts every process on CPU 0 (a one-core box);
# PIN=0 leaves placement to the scheduler (both empty).
pin_cpus() {
  CLIENT_CPU=""; PROXY_CPU=""; PIN_NOTE=""
  case "${PIN:-1}" in
    0) ;;
    one)
      if command -v taskset >/dev/null 2>&1; then
        CLIENT_CPU="taskset -c 0"; PROXY_CPU="taskset -c 0"; PIN_NOTE="every process on CPU 0"
        note "pinning: every process on CPU 0 (a one-core box)"
      fi ;;
    *)
      if command -v taskset >/dev/null 2>&1 && (( $(nproc) >= 2 )); then
        CLIENT_CPU="taskset -c 0"; PROXY_CPU="taskset -c 1"; PIN_NOTE="$1"
        note "pinning: $1 (PIN=0 to turn off, PIN=one for one core)"
      fi ;;
  esac
}

# ---------------------------------------------------------------- figures
# median: the median of the numbers on stdin (0 for none).
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print 0; exit } if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# paired_ratio FILE_A FILE_B COL: the median over rounds of A/B, column COL
# of the per-round result files (round i of A against round i of B: the
# rounds interleave the targets, so each pair ran seconds apart and drift on
# the machine cancels); "q1 median q3" of those ratios.
paired_ratio() {
  paste -d' ' <(awk -v c="$3" '{ print $c }' "$1") <(awk -v c="$3" '{ print $c }' "$2") |
    awk '$2 > 0 { print $1 / $2 }' | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) { print "0 0 0"; exit }
         printf "%.3f %.3f %.3f\n", a[int((NR + 3) / 4)], (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[int((3 * NR + 3) / 4)] }'
}

# proc_mb KEY PID: a /proc/PID/status figure (VmRSS, VmHWM) in MB, "?" if gone.
proc_mb() { awk -v k="$1:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$2/status" 2>/dev/null || echo "?"; }
