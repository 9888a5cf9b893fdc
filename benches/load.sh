#!/usr/bin/env bash
# Load benchmark: small GET over keep-alive, wrk -t1 -c50, one worker each.
#
#   benches/load.sh                      # DURATION=5 ROUNDS=3
#   DURATION=10 ROUNDS=5 benches/load.sh
#   SKIP_BUILD=1 benches/load.sh         # reuse target/release/harmony
#   NO_HAPROXY=1 benches/load.sh         # leave haproxy out
#
# Targets, all on 127.0.0.1 in a temp dir, stopped by PID on exit:
#   origin   benches/http_origin.c (built with cc): one epoll loop sending the
#            very bytes nginx's `return 200 "hello world\n"` sends, for less
#            CPU on the core it shares with wrk, so that the proxy, not that
#            core, limits req/s. ORIGIN=nginx: nginx (1 worker) itself (also
#            the fallback without a C compiler).
#   nginx    nginx (1 worker) proxying to the origin (upstream keepalive 64)
#   harmony  target/release/harmony (workers = 1, access log off)
#   haproxy  haproxy (nbthread 1, http-reuse always), if installed
#   tcp_relay    benches/tcp_relay.c (built with cc): a zero-work TCP relay,
#                one origin connection per client connection, no HTTP at all.
#                Not a proxy anyone would run: the ceiling for one, i.e. what
#                the kernel's two extra loopback hops cost. NO_RELAY=1: left out.
#   nginx_lua    nginx + lua module (if installed): access_by_lua sets a request
#                header and checks the method, header_filter_by_lua sets one
#                response header and removes Server
#   harmony_lua  harmony with a Lua middleware doing the same work in
#                on_request / on_response
# NO_LUA=1 leaves the two Lua targets out.
# PIN=1 (the default on 2+ cores, with taskset) runs wrk and the origin on
# CPU 0 and every proxy on CPU 1, so each proxy has a core of its own and the
# comparison measures the proxies, not the scheduler; PIN=0 turns it off.
# Rounds are interleaved (origin, nginx, harmony, haproxy, origin, ...) so
# drift on the shared cores hits every target alike. Prints a markdown table
# of medians: requests/s, p50 and p99 latency, requests per CPU-second of the
# proxy process (user + system time from /proc: the proxy's efficiency even
# when wrk and the origin on the other core, not the proxy, limit req/s) and
# each proxy's RSS after load. Ratios are given twice: of the medians, and as
# the median [quartiles] of per-round ratios (round i of A against round i of
# B, which ran seconds apart: the steadier figure on a noisy machine).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH=load.sh
# shellcheck source=benches/lib.sh
. benches/lib.sh
bench_args "$@"

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-50}"

for tool in nginx wrk awk curl; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (Debian: apt-get install -y nginx wrk curl gawk)"
done
HAVE_HAPROXY=0
if [[ -z "${NO_HAPROXY:-}" ]] && command -v haproxy >/dev/null 2>&1; then HAVE_HAPROXY=1; fi
[[ $HAVE_HAPROXY == 1 ]] || note "haproxy not used (not installed or NO_HAPROXY set)"

# ---------------------------------------------------------------- temp dir, harmony, pinning
bench_workdir harmony-bench
chmod 755 "$WORK"   # nginx workers may run as an unprivileged user
build_harmony
build_tcp_relay
ORIGIN="${ORIGIN:-c}"
ORIGIN_BIN=""
if [[ $ORIGIN == c ]]; then
  ORIGIN_BIN=$(build_c http_origin)
  [[ -n $ORIGIN_BIN ]] || { note "origin: nginx instead"; ORIGIN=nginx; }
fi
[[ $ORIGIN == c || $ORIGIN == nginx ]] || die "ORIGIN must be c or nginx, not '$ORIGIN'"
pin_cpus "wrk and origin on CPU 0, proxies on CPU 1"

# ---------------------------------------------------------------- configs
O_PORT=$(free_port); N_PORT=$(free_port); H_PORT=$(free_port); A_PORT=$(free_port)
NL_PORT=$(free_port); HL_PORT=$(free_port)
LUA_MOD=/usr/lib/nginx/modules/ngx_http_lua_module.so
NDK_MOD=/usr/lib/nginx/modules/ndk_http_module.so
HAVE_LUA=0
if [[ -z "${NO_LUA:-}" ]]; then
  if [[ -f $LUA_MOD && -f $NDK_MOD ]]; then HAVE_LUA=1; else note "nginx_lua not used (apt-get install -y libnginx-mod-http-lua)"; fi
fi

nginx_conf() {  # nginx_conf NAME SERVER_BODY HTTP_EXTRA PORT [MAIN_EXTRA]
  local dir="$WORK/$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  chmod -R 777 "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
${5:-}
worker_processes 1;
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    $3
    server {
        listen 127.0.0.1:$4;
        $2
    }
}
EOF
}

nginx_conf origin 'location / { default_type text/plain; return 200 "hello world\n"; }' "" "$O_PORT"
nginx_conf nginx 'location / { proxy_pass http://origin_up; proxy_http_version 1.1; proxy_set_header Connection ""; }' \
  "upstream origin_up { server 127.0.0.1:$O_PORT; keepalive 64; }" "$N_PORT"

if [[ $HAVE_LUA == 1 ]]; then
  nginx_conf nginx_lua 'location / {
        access_by_lua_block {
            ngx.req.set_header("x-gateway", "bench")
            if ngx.req.get_method() == "DELETE" then return ngx.exit(403) end
        }
        header_filter_by_lua_block {
            ngx.header["x-lua"] = "1"
            ngx.header["server"] = nil
        }
        proxy_pass http://origin_up; proxy_http_version 1.1; proxy_set_header Connection "";
    }' "upstream origin_up { server 127.0.0.1:$O_PORT; keepalive 64; }" "$NL_PORT" \
    "load_module $NDK_MOD; load_module $LUA_MOD;"
fi

mkdir -p "$WORK/harmony_lua/scripts"
cat >"$WORK/harmony_lua/scripts/bench.lua" <<'EOF'
-- the same work as the nginx_lua target: one request header, a method
-- check, one response header set and one removed
return {
  on_request = function(req, ctx)
    req.headers["x-gateway"] = "bench"
    if req.method == "DELETE" then return harmony.respond(403) end
  end,
  on_response = function(res, ctx)
    res.headers["x-lua"] = "1"
    res.headers["server"] = nil
  end,
}
EOF
harmony_conf() {  # harmony_conf NAME PORT [MIDDLEWARE_NAME]: one pipeline / -> origin
  local dir="$WORK/$1" mw=""
  [[ -n ${3:-} ]] && mw="middleware = [\"$3\"]"
  mkdir -p "$dir"
  { harmony_head "$1"; cat <<EOF

[network.default.http]
bind_address = "127.0.0.1"
bind_port = $2

[pipelines.bench]
networks = ["default"]
endpoints = ["all"]
$mw
backends = ["origin"]

[endpoints.all]
service = "http"
options = { path_prefix = "/" }

[backends.origin]
service = "http"
options = { base_url = "http://127.0.0.1:$O_PORT" }
EOF
    [[ -z ${3:-} ]] || lua_middleware "$3" bench.lua
  } >"$dir/harmony.toml"
}

harmony_conf harmony "$H_PORT"
harmony_conf harmony_lua "$HL_PORT" bench_lua

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend fe
    bind 127.0.0.1:$A_PORT
    default_backend be
backend be
    server origin 127.0.0.1:$O_PORT
EOF

# ---------------------------------------------------------------- start everything
declare -A PID_OF URL_OF
TARGETS=()

start_nginx() {  # start_nginx NAME PORT
  local dir="$WORK/$1"
  local pin=$PROXY_CPU
  [[ $1 == origin ]] && pin=$CLIENT_CPU
  $pin nginx -e "$dir/logs/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/logs/stdout" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$2" "$pid" || { cat "$dir/logs/error.log" "$dir/logs/stdout" >&2 2>/dev/null; die "nginx '$1' did not start"; }
  PID_OF[$1]=$pid
}

if [[ $ORIGIN == c ]]; then
  $CLIENT_CPU "$ORIGIN_BIN" "$O_PORT" >"$WORK/http_origin.log" 2>&1 &
  PID_OF[origin]=$!
  PIDS+=("${PID_OF[origin]}")
  wait_port "$O_PORT" "${PID_OF[origin]}" || { cat "$WORK/http_origin.log" >&2; die "http_origin did not start"; }
else
  start_nginx origin "$O_PORT"
fi
URL_OF[origin]="http://127.0.0.1:$O_PORT/"; TARGETS+=(origin)
start_nginx nginx "$N_PORT"
URL_OF[nginx]="http://127.0.0.1:$N_PORT/"; TARGETS+=(nginx)

if [[ $HARMONY_OK == 1 ]]; then
  if spawn_harmony harmony "$H_PORT"; then
    PID_OF[harmony]=$HARMONY_PID; URL_OF[harmony]="http://127.0.0.1:$H_PORT/"; TARGETS+=(harmony)
  else
    note "SKIP harmony: it did not listen on 127.0.0.1:$H_PORT within 10 s; its stderr:"
    tail -n 20 "$WORK/harmony/stderr" >&2 || true
  fi
fi

if [[ $HAVE_LUA == 1 ]]; then
  start_nginx nginx_lua "$NL_PORT"
  URL_OF[nginx_lua]="http://127.0.0.1:$NL_PORT/"; TARGETS+=(nginx_lua)
fi
if [[ $HARMONY_OK == 1 && -z "${NO_LUA:-}" ]]; then
  if spawn_harmony harmony_lua "$HL_PORT"; then
    PID_OF[harmony_lua]=$HARMONY_PID; URL_OF[harmony_lua]="http://127.0.0.1:$HL_PORT/"; TARGETS+=(harmony_lua)
  else
    note "SKIP harmony_lua: did not listen; its stderr:"; tail -n 20 "$WORK/harmony_lua/stderr" >&2 || true
  fi
fi

if [[ $HAVE_HAPROXY == 1 ]]; then
  $PROXY_CPU haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  apid=$!
  PIDS+=("$apid")
  if wait_port "$A_PORT" "$apid"; then
    PID_OF[haproxy]=$apid; URL_OF[haproxy]="http://127.0.0.1:$A_PORT/"; TARGETS+=(haproxy)
  else
    note "SKIP haproxy: did not start"; tail -n 20 "$WORK/haproxy.log" >&2 || true
  fi
fi

if [[ -n $RELAY_BIN ]]; then
  if spawn_tcp_relay "$O_PORT"; then
    PID_OF[tcp_relay]=$RELAY_PID; URL_OF[tcp_relay]="http://127.0.0.1:$RELAY_PORT/"; TARGETS+=(tcp_relay)
  else
    note "SKIP tcp_relay: did not listen"; tail -n 20 "$WORK/tcp_relay.log" >&2 || true
  fi
fi

# nginx runs as a master and one worker: the worker is the one that works.
is_nginx() { [[ $1 == nginx || $1 == nginx_lua || ($1 == origin && $ORIGIN == nginx) ]]; }

# The process whose CPU time is the target's: nginx's one worker, else the PID.
declare -A CPU_PID
for t in "${TARGETS[@]}"; do
  if is_nginx "$t"; then CPU_PID[$t]=$(pgrep -P "${PID_OF[$t]}" | head -n 1 || true); else CPU_PID[$t]=${PID_OF[$t]}; fi
done

# Every target must answer the origin's body before it is measured.
checked=()
for t in "${TARGETS[@]}"; do
  body=$(curl -sS --noproxy '*' --max-time 5 "${URL_OF[$t]}" 2>&1 || true)
  if [[ $body == "hello world" ]]; then
    checked+=("$t")
  elif [[ $t == origin || $t == nginx || $t == nginx_lua ]]; then
    die "$t answered '$body' instead of 'hello world'"
  else
    note "SKIP $t: answered '$body' instead of 'hello world'"
  fi
done
TARGETS=("${checked[@]}")

# ---------------------------------------------------------------- run wrk
# parse_wrk FILE -> "rps p50_ms p99_ms errors requests"
parse_wrk() {
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v + 0
    }
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { reqs = $1 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { v = $i; sub(/,/, "", v); err += v } }
    END { printf "%s %s %s %d %d\n", (rps == "" ? 0 : rps), (p50 == "" ? 0 : p50), (p99 == "" ? 0 : p99), err, reqs }
  ' "$1"
}

note "targets: ${TARGETS[*]}; $ROUNDS round(s) of wrk -t1 -c$CONNS -d${DURATION}s"
for round in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    out="$WORK/wrk-$t-$round.txt"
    c0=$(cpu_ticks "${CPU_PID[$t]:-0}")
    if ! timeout $((DURATION + 30)) $CLIENT_CPU wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${URL_OF[$t]}" >"$out" 2>&1; then
      note "wrk against $t failed in round $round:"; cat "$out" >&2
    fi
    c1=$(cpu_ticks "${CPU_PID[$t]:-0}")
    read -r rps p50 p99 errs reqs < <(parse_wrk "$out")
    # requests per CPU-second of the proxy (0 when unknown, e.g. the origin)
    eff=$(awk -v n="$reqs" -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { print (d > 0 ? n / (d / hz) : 0) }')
    echo "$rps $p50 $p99 $errs $eff" >>"$WORK/res-$t"
    note "round $round $t: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, errors $errs, $eff req per CPU-s"
  done
done

# ---------------------------------------------------------------- RSS after load
declare -A RSS
for t in "${TARGETS[@]}"; do
  pid=${PID_OF[$t]}
  if is_nginx "$t"; then
    w=$(pgrep -P "$pid" | head -n 1 || true); RSS[$t]=$([[ -n $w ]] && proc_mb VmRSS "$w" || echo "?")
  else
    RSS[$t]=$(proc_mb VmRSS "$pid")
  fi
done

# ---------------------------------------------------------------- report
declare -A RPS P50 P99 ERR EFF
for t in "${TARGETS[@]}"; do
  RPS[$t]=$(awk '{ print $1 }' "$WORK/res-$t" | median)
  P50[$t]=$(awk '{ print $2 }' "$WORK/res-$t" | median)
  P99[$t]=$(awk '{ print $3 }' "$WORK/res-$t" | median)
  ERR[$t]=$(awk '{ s += $4 } END { print s + 0 }' "$WORK/res-$t")
  EFF[$t]=$(awk '{ print $5 }' "$WORK/res-$t" | median)
done

echo
echo "Small GET over keep-alive: wrk -t1 -c$CONNS -d${DURATION}s, median of $ROUNDS round(s), $(nproc) cores, one worker each, origin $([[ $ORIGIN == c ]] && echo http_origin.c || echo nginx)${PIN_NOTE:+, $PIN_NOTE}"
echo
echo "| target | req/s | p50 (ms) | p99 (ms) | req per proxy CPU-s | worker RSS after load (MB) | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for t in "${TARGETS[@]}"; do
  eff=$(awk -v e="${EFF[$t]}" 'BEGIN { if (e > 0) printf "%.0f", e; else printf "-" }')
  printf "| %s | %.0f | %.3f | %.3f | %s | %s | %s |\n" "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "$eff" "${RSS[$t]}" "${ERR[$t]}"
done
echo

# ratio A B LABEL: A/B as the ratio of medians and as the median [q1-q3] of
# per-round ratios, for req/s and for req per proxy CPU-second.
ratio() {
  [[ -n ${RPS[$1]:-} && -n ${RPS[$2]:-} ]] || return 0
  local rq rm rh eq em eh
  read -r rq rm rh < <(paired_ratio "$WORK/res-$1" "$WORK/res-$2" 1)
  read -r eq em eh < <(paired_ratio "$WORK/res-$1" "$WORK/res-$2" 5)
  awk -v l="$3" -v a="${RPS[$1]}" -v b="${RPS[$2]}" -v ea="${EFF[$1]}" -v eb="${EFF[$2]}" \
      -v rq="$rq" -v rm="$rm" -v rh="$rh" -v eq="$eq" -v em="$em" -v eh="$eh" 'BEGIN {
    printf "%s: req/s %.2f (per round %.2f [%.2f-%.2f]); per proxy CPU-s %.2f (per round %.2f [%.2f-%.2f])\n",
      l, (b > 0 ? a / b : 0), rm, rq, rh, (eb > 0 ? ea / eb : 0), em, eq, eh }'
}
if [[ -n ${RPS[harmony]:-} ]]; then
  ratio harmony nginx "harmony/nginx"
  ratio harmony haproxy "harmony/haproxy"
  ratio harmony tcp_relay "harmony/tcp_relay (the zero-work ceiling)"
  ratio nginx tcp_relay "nginx/tcp_relay"
else
  echo "harmony/nginx: n/a (harmony skipped, see messages above)"
fi
if [[ -n ${RPS[harmony_lua]:-} ]]; then
  ratio harmony_lua nginx_lua "harmony_lua/nginx_lua (goal >= 1.2)"
  if [[ -n ${RPS[harmony]:-} ]]; then
    ratio harmony_lua harmony "harmony_lua/harmony (goal >= 0.8: the Lua stage costs <= 20%)"
  fi
fi
