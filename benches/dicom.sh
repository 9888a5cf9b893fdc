#!/usr/bin/env bash
# DICOM benchmark: DCMTK storescu / echoscu -> (harmony ->) storescp, loopback.
#
#   benches/dicom.sh                     # ROUNDS=5 FILES=200 ECHOES=500: about 30 s
#   ROUNDS=9 benches/dicom.sh            # steadier medians
#   SKIP_BUILD=1 benches/dicom.sh        # reuse target/release/harmony
#   STORE=tmpfs benches/dicom.sh         # storescp writes files (on /dev/shm) instead of --ignore
#   benches/dicom.sh -h                  # this text
#
# Targets, all on 127.0.0.1 in a temp dir, every process stopped by PID on exit:
#   direct       storescu / echoscu straight to storescp
#   harmony      through target/release/harmony (workers = 1, access log off):
#                the relay's fast path (PDUs relayed byte for byte after the AC)
#   tcp_relay    through benches/tcp_relay.c (built with cc): a zero-work TCP
#                relay that copies bytes and understands no DICOM; the ceiling
#                for any proxy, i.e. the cost of the two extra loopback hops
#                alone (NO_RELAY=1 leaves it out)
#   harmony_lua  through harmony with a lua middleware whose on_dimse(msg, ctx)
#                sets InstitutionName = "BENCH" on every C-STORE-RQ. Reported
#                as "SKIP harmony_lua_dimse: ..." (and the rest still runs) if
#                harmony rejects the config or the check store fails.
# Backend: storescp --ignore (receives every PDU, answers Success, writes
# nothing), so the figures measure the network path, not a file system;
# STORE=tmpfs makes it write the files into a directory on /dev/shm instead.
# Before the rounds, one file is sent through each target to a second,
# file-writing storescp (called AE CHECK) and read back with dcmdump: the
# direct and harmony targets must deliver InstitutionName ORIG, harmony_lua
# must deliver BENCH.
#
# Per round and target (rounds interleave the targets):
#   store   one storescu process, one association, FILES distinct files
#           (about 9 KB each, made once with dump2dcm): files/s = FILES / wall
#           time of the whole storescu process (process start ~25 ms,
#           association, stores, release: nothing subtracted)
#   store1  the same with 1 file; "net" files/s = (FILES-1) / (store - store1)
#           (medians) takes process start and association set-up out
#   echo    one echoscu process, --repeat ECHOES (one association);
#           echo1 the same with one echo; per echo = (echo - echo1) / (ECHOES-1)
#           (medians), so process start and association set-up are out
# Medians over ROUNDS; ratios harmony/direct (goal >= 0.95) and
# harmony_lua/direct (goal >= 0.8); added us per echo; harmony's peak RSS
# (VmHWM) after the runs.
#
# Knobs: ROUNDS (5), FILES (200), ECHOES (500), PIN (1: DCMTK on CPU 0 and
# harmony on CPU 1 with taskset, on 2+ cores; 0: off), STORE (ignore|tmpfs),
# SKIP_BUILD, NO_LUA (leave harmony_lua out), KEEP (keep the temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=dicom.sh
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_args "$@"

ROUNDS="${ROUNDS:-5}"
FILES="${FILES:-200}"
ECHOES="${ECHOES:-500}"
STORE="${STORE:-ignore}"

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $FILES =~ ^[0-9]+$ ]] && (( FILES >= 2 && FILES <= 10000 )) || die "FILES must be 2..10000"
[[ $ECHOES =~ ^[0-9]+$ ]] && (( ECHOES >= 2 && ECHOES <= 100000 )) || die "ECHOES must be 2..100000"
[[ $STORE == ignore || $STORE == tmpfs ]] || die "STORE must be ignore or tmpfs"
for tool in storescu storescp echoscu dump2dcm dcmdump awk timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (Debian: apt-get install -y dcmtk gawk)"
done
# DCMTK leaves Nagle on unless this is set: ~40 ms per small PDU otherwise.
export TCP_NODELAY=1

# ---------------------------------------------------------------- temp dir, harmony, pinning
bench_workdir harmony-dicom-bench
build_harmony
build_tcp_relay
pin_cpus "DCMTK (storescu, echoscu, storescp) on CPU 0, harmony on CPU 1"

# ---------------------------------------------------------------- test files
# FILES Secondary Capture images, 64x128 8-bit (8 KiB of pixel data, ~9 KB
# per file), distinct SOP instance UIDs, InstitutionName ORIG.
note "making $FILES files with dump2dcm"
mkdir -p "$WORK/files" "$WORK/dump"
PIXELS=$(awk 'BEGIN { for (i = 0; i < 8192; i++) printf "%s%02x", (i ? "\\" : ""), i % 256 }')
for i in $(seq "$FILES"); do
  cat >"$WORK/dump/$i.dump" <<EOF
(0008,0016) UI [1.2.840.10008.5.1.4.1.1.7]
(0008,0018) UI [1.2.826.0.1.3680043.2.1125.77.$$.$i]
(0008,0020) DA [20240101]
(0008,0060) CS [OT]
(0008,0064) CS [WSD]
(0008,0080) LO [ORIG]
(0010,0010) PN [Bench^Patient$i]
(0010,0020) LO [BENCH-$i]
(0020,000d) UI [1.2.826.0.1.3680043.2.1125.77.$$.0]
(0020,000e) UI [1.2.826.0.1.3680043.2.1125.77.$$.0.1]
(0020,0013) IS [$i]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0010) US 64
(0028,0011) US 128
(0028,0100) US 8
(0028,0101) US 8
(0028,0102) US 7
(0028,0103) US 0
(7fe0,0010) OB $PIXELS
EOF
done
# two dump2dcm at a time (each process spends ~25 ms starting)
seq "$FILES" | xargs -P 2 -I{} dump2dcm +te +l 40000 "$WORK/dump/{}.dump" "$WORK/files/{}.dcm" \
  || die "dump2dcm failed"
rm -rf "$WORK/dump"
FILE_LIST=()
for i in $(seq "$FILES"); do FILE_LIST+=("$WORK/files/$i.dcm"); done
FILE_BYTES=$(stat -c %s "${FILE_LIST[0]}")

# ---------------------------------------------------------------- storescp backends
if [[ $STORE == ignore ]]; then
  STORE_OPTS=(--ignore); STORE_DIR="$WORK/store"
else
  [[ -d /dev/shm && -w /dev/shm ]] || die "STORE=tmpfs needs a writable /dev/shm"
  STORE_DIR="$(mktemp -d /dev/shm/harmony-dicom-bench.XXXXXX)"
  STORE_OPTS=(); CLEAN_DIRS+=("$STORE_DIR")
fi
mkdir -p "$STORE_DIR" "$WORK/check"

# start_storescp AE DIR LOG [OPTS...]: sets SCP_PORT; a few tries, since a
# free port can be taken by another process before storescp binds it.
start_storescp() {
  local ae=$1 dir=$2 log=$3 try pid; shift 3
  for try in 1 2 3 4 5; do
    SCP_PORT=$(free_port)
    $CLIENT_CPU storescp --aetitle "$ae" "$@" --output-directory "$dir" "$SCP_PORT" >"$log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    if wait_port "$SCP_PORT" "$pid"; then return 0; fi
    kill -KILL "$pid" 2>/dev/null || true
  done
  cat "$log" >&2; die "storescp $ae did not start"
}
start_storescp STORE "$STORE_DIR" "$WORK/storescp.log" "${STORE_OPTS[@]}"; S_PORT=$SCP_PORT
start_storescp CHECK "$WORK/check" "$WORK/storescp-check.log"; C_PORT=$SCP_PORT

# ---------------------------------------------------------------- harmony
mkdir -p "$WORK/harmony/scripts" "$WORK/harmony_lua/scripts"
cat >"$WORK/harmony_lua/scripts/dimse.lua" <<'EOF'
-- change one tag on every C-STORE-RQ; everything else passes untouched
return {
  on_dimse = function(msg, ctx)
    if msg.command == "C-STORE-RQ" then
      msg.dataset.InstitutionName = "BENCH"
    end
  end,
}
EOF
# harmony_conf NAME PORT [MIDDLEWARE]: called AE HARMONY -> storescp STORE,
# called AE CHECK -> the file-writing storescp CHECK.
harmony_conf() {
  local dir="$WORK/$1" mw=""
  [[ -n ${3:-} ]] && mw="middleware = [\"$3\"]"
  { harmony_head "$1"; cat <<EOF

[network.dicom.dicom]
bind_address = "127.0.0.1"
bind_port = $2

[pipelines.bench]
networks = ["dicom"]
endpoints = ["bench_in"]
$mw
backends = ["store"]

[pipelines.check]
networks = ["dicom"]
endpoints = ["check_in"]
$mw
backends = ["check"]

[endpoints.bench_in]
service = "dicom"
options = { ae_title = "HARMONY" }

[endpoints.check_in]
service = "dicom"
options = { ae_title = "CHECK" }

[backends.store]
service = "dicom"
options = { aet = "STORE", host = "127.0.0.1", port = $S_PORT, timeout_ms = 5000 }

[backends.check]
service = "dicom"
options = { aet = "CHECK", host = "127.0.0.1", port = $C_PORT, timeout_ms = 5000 }
EOF
    [[ -z ${3:-} ]] || lua_middleware "$3" dimse.lua
  } >"$dir/harmony.toml"
}

declare -A PID_OF PORT_OF AE_OF CHECK_PORT_OF
TARGETS=(direct)
PORT_OF[direct]=$S_PORT; AE_OF[direct]=STORE
CHECK_PORT_OF[direct]=$C_PORT

start_harmony() {  # start_harmony NAME SKIP_LABEL [MIDDLEWARE]
  local try port
  for try in 1 2 3 4 5; do
    port=$(free_port)
    harmony_conf "$1" "$port" "${3:-}"
    if spawn_harmony "$1" "$port"; then
      PID_OF[$1]=$HARMONY_PID; PORT_OF[$1]=$port; AE_OF[$1]=HARMONY; CHECK_PORT_OF[$1]=$port
      TARGETS+=("$1")
      return 0
    fi
    kill -KILL "$HARMONY_PID" 2>/dev/null || true
    grep -q 'Address already in use' "$WORK/$1/stderr" || break   # anything else will not go away
  done
  note "SKIP $2: harmony did not listen on 127.0.0.1:$port (config rejected?); its stderr:"
  tail -n 20 "$WORK/$1/stderr" >&2 || true
}
if [[ $HARMONY_OK == 1 ]]; then
  start_harmony harmony harmony
  [[ -n "${NO_LUA:-}" ]] || start_harmony harmony_lua harmony_lua_dimse bench_dimse
fi

if [[ -n $RELAY_BIN ]]; then
  if spawn_tcp_relay "$S_PORT" && { r_pid=$RELAY_PID r_port=$RELAY_PORT; spawn_tcp_relay "$C_PORT"; }; then
    PID_OF[tcp_relay]=$r_pid; PORT_OF[tcp_relay]=$r_port; AE_OF[tcp_relay]=STORE; CHECK_PORT_OF[tcp_relay]=$RELAY_PORT
    TARGETS+=(tcp_relay)
  else
    note "SKIP tcp_relay: did not listen"; tail -n 20 "$WORK/tcp_relay.log" >&2 || true
  fi
fi

# ---------------------------------------------------------------- check each target
# One file through each target to the file-writing storescp; read it back.
checked=()
for t in "${TARGETS[@]}"; do
  rm -f "$WORK/check/"*
  want=ORIG; label=$t
  [[ $t == harmony_lua ]] && { want=BENCH; label=harmony_lua_dimse; }
  if ! timeout 30 $CLIENT_CPU storescu -aet BENCHSCU -aec CHECK 127.0.0.1 "${CHECK_PORT_OF[$t]}" "${FILE_LIST[0]}" >"$WORK/check-$t.log" 2>&1; then
    [[ $t == direct ]] && { cat "$WORK/check-$t.log" >&2; die "storescu to storescp failed"; }
    note "SKIP $label: the check store failed:"; tail -n 10 "$WORK/check-$t.log" >&2
    [[ -z ${PID_OF[$t]:-} ]] || tail -n 10 "$WORK/$t/stderr" >&2 || true
    continue
  fi
  got=""
  for _ in $(seq 100); do
    f=$(ls "$WORK/check/" 2>/dev/null | head -n 1)
    if [[ -n $f ]]; then
      sleep 0.05   # storescp may still be writing it
      got=$(dcmdump +P 0008,0080 "$WORK/check/$f" 2>/dev/null | sed -n 's/.*\[\(.*\)\].*/\1/p' | head -n 1)
      break
    fi
    sleep 0.05
  done
  if [[ $got != "$want" ]]; then
    [[ $t == direct ]] && die "direct check: InstitutionName '$got', expected '$want'"
    note "SKIP $label: the stored file has InstitutionName '$got', expected '$want'"
    continue
  fi
  checked+=("$t")
done
TARGETS=("${checked[@]}")

# ---------------------------------------------------------------- measure
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# timed NAME TARGET ROUND cmd...: wall time of cmd in us on stdout, "" on failure
timed() {
  local name=$1 t=$2 r=$3; shift 3
  local t0 t1
  t0=$(now_us)
  if ! timeout 120 "$@" >"$WORK/out-$name-$t-$r.log" 2>&1; then
    note "$name via $t failed in round $r:"; tail -n 10 "$WORK/out-$name-$t-$r.log" >&2
    echo ""; return
  fi
  t1=$(now_us)
  echo $((t1 - t0))
}

note "targets: ${TARGETS[*]}; $ROUNDS round(s) of $FILES files ($FILE_BYTES bytes each) and $ECHOES echoes; storescp ${STORE_OPTS[*]:-writing to $STORE_DIR}"
FAILED=0
declare -A DROPPED
for r in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    [[ -z ${DROPPED[$t]:-} ]] || continue
    p=${PORT_OF[$t]} ae=${AE_OF[$t]}
    s=$(timed store "$t" "$r" $CLIENT_CPU storescu -aet BENCHSCU -aec "$ae" 127.0.0.1 "$p" "${FILE_LIST[@]}")
    s1=$(timed store1 "$t" "$r" $CLIENT_CPU storescu -aet BENCHSCU -aec "$ae" 127.0.0.1 "$p" "${FILE_LIST[0]}")
    e=$(timed echo "$t" "$r" $CLIENT_CPU echoscu --repeat "$ECHOES" -aet BENCHSCU -aec "$ae" 127.0.0.1 "$p")
    e1=$(timed echo1 "$t" "$r" $CLIENT_CPU echoscu -aet BENCHSCU -aec "$ae" 127.0.0.1 "$p")
    [[ $STORE == tmpfs ]] && rm -f "$STORE_DIR/"*
    if [[ -z $s || -z $s1 || -z $e || -z $e1 ]]; then
      if [[ $t == harmony_lua ]]; then
        # the DICOM Lua stage is new: its failure is reported, not fatal
        note "SKIP harmony_lua_dimse: a run failed in round $r (see above); no figures for it"
        DROPPED[$t]=1
      else
        FAILED=1
      fi
      continue
    fi
    echo "$s $s1 $e $e1" >>"$WORK/res-$t"
    awk -v t="$t" -v r="$r" -v n="$FILES" -v m="$ECHOES" -v s="$s" -v s1="$s1" -v e="$e" -v e1="$e1" 'BEGIN {
      printf "dicom.sh: round %d %s: %.0f files/s (%.1f ms), net %.0f files/s; echo %.1f us\n",
        r, t, n / (s / 1e6), s / 1000, (s > s1 ? (n - 1) / ((s - s1) / 1e6) : 0), (e - e1) / (m - 1) }' >&2
  done
done

# ---------------------------------------------------------------- peak RSS
declare -A HWM
for t in "${TARGETS[@]}"; do
  if [[ -n ${PID_OF[$t]:-} ]]; then HWM[$t]=$(proc_mb VmHWM "${PID_OF[$t]}"); else HWM[$t]="-"; fi
done

# ---------------------------------------------------------------- report
declare -A FPS BEST NET ECHO_US STORE_MS
for t in "${TARGETS[@]}"; do
  [[ -s $WORK/res-$t && -z ${DROPPED[$t]:-} ]] || continue
  STORE_MS[$t]=$(awk '{ print $1 / 1000 }' "$WORK/res-$t" | median)
  FPS[$t]=$(awk -v n="$FILES" '{ print n / ($1 / 1e6) }' "$WORK/res-$t" | median)
  BEST[$t]=$(awk -v n="$FILES" '{ v = n / ($1 / 1e6); if (v > b) b = v } END { print b }' "$WORK/res-$t")
  # differences of medians (not medians of per-round differences): one slow
  # 1-file run does not make a round's net figure absurd
  s=$(awk '{ print $1 }' "$WORK/res-$t" | median); s1=$(awk '{ print $2 }' "$WORK/res-$t" | median)
  e=$(awk '{ print $3 }' "$WORK/res-$t" | median); e1=$(awk '{ print $4 }' "$WORK/res-$t" | median)
  NET[$t]=$(awk -v n="$FILES" -v s="$s" -v s1="$s1" 'BEGIN { print (s > s1 ? (n - 1) / ((s - s1) / 1e6) : 0) }')
  ECHO_US[$t]=$(awk -v m="$ECHOES" -v e="$e" -v e1="$e1" 'BEGIN { print (e - e1) / (m - 1) }')
done

echo
echo "DICOM over loopback: storescu $FILES files (${FILE_BYTES} B) in one association, echoscu --repeat $ECHOES;"
echo "storescp ${STORE_OPTS[*]:-writing to tmpfs}; median of $ROUNDS round(s), interleaved; $(nproc) cores${PIN_NOTE:+, $PIN_NOTE}"
echo
echo "| target | store wall (ms) | files/s | best files/s | net files/s | echo (us) | added us/echo | peak RSS (MB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for t in "${TARGETS[@]}"; do
  [[ -n ${FPS[$t]:-} ]] || continue
  added="-"
  [[ $t != direct && -n ${ECHO_US[direct]:-} ]] && added=$(awk -v a="${ECHO_US[$t]}" -v b="${ECHO_US[direct]}" 'BEGIN { printf "%+.1f", a - b }')
  printf "| %s | %.1f | %.0f | %.0f | %.0f | %.1f | %s | %s |\n" "$t" "${STORE_MS[$t]}" "${FPS[$t]}" "${BEST[$t]}" "${NET[$t]}" "${ECHO_US[$t]}" "$added" "${HWM[$t]}"
done
echo
ratio() {  # ratio NAME GOAL [BASE]: files/s of NAME against BASE (direct)
  local base=${3:-direct}
  if [[ -n ${FPS[$1]:-} && -n ${FPS[$base]:-} ]]; then
    local pq pm ph
    # per round: wall time of BASE / wall time of NAME (the same round)
    read -r pq pm ph < <(paired_ratio "$WORK/res-$base" "$WORK/res-$1" 1)
    awk -v n="$1" -v base="$base" -v g="$2" -v a="${FPS[$1]}" -v b="${FPS[$base]}" -v na="${NET[$1]}" -v nb="${NET[$base]}" \
        -v ba="${BEST[$1]}" -v bb="${BEST[$base]}" -v pq="$pq" -v pm="$pm" -v ph="$ph" 'BEGIN {
      r = a / b
      printf "%s/%s files/s: ratio of medians %.3f%s; per round %.3f [%.3f-%.3f]; best-of-rounds %.3f; net %.3f\n",
        n, base, r, (g == "" ? "" : sprintf(" (goal >= %s: %s)", g, (r >= g ? "met" : "NOT met"))), pm, pq, ph,
        (bb > 0 ? ba / bb : 0), (nb > 0 ? na / nb : 0) }'
  else
    echo "$1/$base files/s: n/a ($1 or $base skipped, see messages above)"
  fi
}
ratio harmony 0.95
[[ -n "${NO_LUA:-}" ]] || ratio harmony_lua 0.8
ratio tcp_relay "" direct
ratio harmony "" tcp_relay
exit $FAILED
