#!/usr/bin/env bash
# End-to-end load harness: chat2api vs nginx 1.22 as a keep-alive reverse
# proxy, both in front of the same instant upstream, measured in the same run.
#
#   bash benches/e2e/e2e.sh                 # 3 runs, prints per-run tables and medians
#
# What it starts (all on 127.0.0.1, all stopped on exit):
#   upstream  nginx, 1 worker: POST /v1/chat/completions answers a fixed
#             chat.completion JSON (port UP) or a fixed 5-event SSE stream
#             (port UPS), from memory, with keep-alive.
#   nginx     second nginx, 1 worker: keep-alive reverse proxy to UP / UPS
#             (upstream keepalive 64, HTTP/1.1, proxy_buffering off for SSE).
#   chat2api  target/release/chat2api with benches/e2e/chat2api-bench.json: client
#             key check, JSON validation, routing by model, model rewrite.
# and loads each with wrk (benches/e2e/chat.lua), keep-alive, -c$CONNS and -c1.
# CPU per request is utime+stime of the proxy process(es) only, from
# /proc/PID/stat before and after each wrk run, divided by the requests wrk
# completed; "kernel %" is the stime share of that CPU. Memory: VmRSS of a
# fresh chat2api idle, and with N open streams (benches/e2e/open_streams.py).
# Proxied streams: the same, but each stream goes through chat2api (the
# "front", benches/e2e/chat2api-bench-proxied-front.json, model proxied-slow) to a
# second chat2api (the "back", same binary, benches/e2e/chat2api-bench-proxied-
# back.json, management off) that serves mock-slow, one token per second,
# PROXIED_WORDS tokens: the front holds a client socket, an upstream
# connection and an SSE re-framer per stream. RSS of the front is the figure;
# the back's is reported for information. The front needs 2 fds per stream,
# so N is capped at (fd limit - 100) / 2 and the figure extrapolated to N.
#
# Knobs (environment): RUNS=3 DURATION=8 DURATION_C1=5 CONNS=32
#   PIN=1 (0: nothing pinned, every process shares every core, as users run it;
#   chat2api then starts one worker per core) SSE_EVENTS=3 (content events of the
#   streamed answer, plus a role and a stop event)
#   STREAMS="1000 10000" SLOW_WORDS=45 PROXIED_WORDS=200 WRK_CPU=0 SERVER_CPU=1
#   CHAT2API_BIN=path (skip the build) RESULTS=file (append the raw TSV there)
#   SKIP_STREAMS=1 SKIP_PROXIED_STREAMS=1 SKIP_SSE=1 SKIP_LOAD=1 (memory tests only)
#   SKIP_BURST=1 (RSS after BURST_N=8 concurrent BURST_MIB=49 MiB request bodies)
#   KEY_RULES=local|redis: the bench key gets rules that never refuse (rpm and
#   tpm of 10^9 and 10^11, so every request is admitted, reserved and settled); redis
#   also starts a redis-server on loopback (sharing the cores like the rest)
#   and names it in sharedState, so every request takes one admission script
#   and one settlement in Redis.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH=$ROOT/benches/e2e
RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
DURATION_C1=${DURATION_C1:-5}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-"1000 10000"}
SLOW_WORDS=${SLOW_WORDS:-45}
# Long enough that no proxied stream ends before it is measured (1 token/s).
PROXIED_WORDS=${PROXIED_WORDS:-200}
WRK_CPU=${WRK_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
PIN=${PIN:-1}
SSE_EVENTS=${SSE_EVENTS:-3}
KEY=sk-bench-5f3c9a1e7d2b4c68
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[e2e] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- tools ---------------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v python3 >/dev/null || die "python3 is needed (benches/e2e/open_streams.py, aggregation)"
NPROC=$(nproc)
if ((NPROC < 2)); then WRK_CPU=0; SERVER_CPU=0; fi
# Command prefixes that pin the servers and the load generator (not shell
# functions, so that $! stays the server's own pid).
ON_SERVER=() ON_WRK=()
if ((PIN)); then ON_SERVER=(taskset -c "$SERVER_CPU"); ON_WRK=(taskset -c "$WRK_CPU"); fi

# ---- chat2api binary -----------------------------------------------------
if [[ -z ${CHAT2API_BIN:-} ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
    CHAT2API_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/chat2api
fi
[[ -x $CHAT2API_BIN ]] || die "no binary at $CHAT2API_BIN"

# The stream test holds up to 10 000 client sockets in chat2api and as many in
# open_streams.py; both inherit this limit. A proxied stream costs the front
# two fds (client + upstream), so with a hard limit below 2N + 100 the
# proxied test runs with fewer streams (and says so).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
FD_LIMIT=$(ulimit -n)

WORK=$(mktemp -d /tmp/c2a-e2e.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
UP=$(free_port); UPS=$(free_port); NGX=$(free_port); NGXS=$(free_port); C2A=$(free_port)
BACK=$(free_port)

wait_http() { # url [method] -> waits up to 10 s for any HTTP answer
    local i
    for i in $(seq 100); do
        curl -s -o /dev/null -m 1 -X "${2:-GET}" "$1" && return 0
        sleep 0.1
    done
    return 1
}

# ---- upstream and nginx proxy --------------------------------------------
# ~330 bytes, the shape of a real OpenAI/DeepSeek answer, with usage.
JSON_ANSWER='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"Keep-alive lets the proxy reuse warm connections, so a request skips the TCP handshake."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":52,"completion_tokens":17,"total_tokens":69},"system_fingerprint":"fp_bench"}'
sse_chunk() { # delta finish_reason
    printf 'data: {"id":"chatcmpl-bench0001","object":"chat.completion.chunk","created":1700000000,"model":"deepseek-chat","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}\\n\\n' "$1" "$2"
}
WORDS=(Keep-alive " reuses" " warm" " connections," " so" " a" " request" " skips" " the" " handshake.")
SSE_ANSWER="$(sse_chunk '{"role":"assistant","content":""}' null)"
for ((i = 0; i < SSE_EVENTS; i++)); do
    SSE_ANSWER+="$(sse_chunk "{\"content\":\"${WORDS[i % ${#WORDS[@]}]}\"}" null)"
done
SSE_ANSWER+="$(sse_chunk '{}' '"stop"')data: [DONE]\\n\\n"

nginx_common() { # prefix
    cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
EOF
}
mkdir -p "$WORK/up" "$WORK/ngx" "$WORK/up/www/v1/chat"
printf '%b' "$SSE_ANSWER" >"$WORK/up/www/v1/chat/completions"
chmod -R a+rX "$WORK" # nginx's workers run as an unprivileged user
{
    nginx_common "$WORK/up"
    cat <<EOF
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$UP backlog=4096;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$JSON_ANSWER';
        }
    }
    server {
        listen 127.0.0.1:$UPS backlog=4096;
        # A static file (a long answer is over the limit of a 'return'
        # string); error_page turns the 405 nginx gives a POST to a file
        # into that file.
        location = /v1/chat/completions {
            root $WORK/up/www;
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            error_page 405 =200 \$uri;
        }
    }
}
EOF
} >"$WORK/up/nginx.conf"
{
    nginx_common "$WORK/ngx"
    cat <<EOF
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream instant { server 127.0.0.1:$UP; keepalive 256; keepalive_requests 100000000; }
    upstream instant_sse { server 127.0.0.1:$UPS; keepalive 256; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$NGX backlog=4096;
        location / {
            proxy_pass http://instant;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$NGXS backlog=4096;
        location / {
            proxy_pass http://instant_sse;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
} >"$WORK/ngx/nginx.conf"

start_nginx() { # name -> sets <name>_PID
    "${ON_SERVER[@]}" nginx -p "$WORK/$1/" -c "$WORK/$1/nginx.conf" 2>>"$WORK/$1/stderr" &
    PIDS+=($!)
    printf -v "${1}_PID" %s "$!"
}
start_nginx up
start_nginx ngx
wait_http "http://127.0.0.1:$UP/" || die "upstream nginx did not start: $(cat "$WORK/up/"*.log "$WORK/up/stderr")"
wait_http "http://127.0.0.1:$NGX/" || die "proxy nginx did not start: $(cat "$WORK/ngx/"*.log "$WORK/ngx/stderr")"
nginx_pids() { # master pid -> master and workers
    echo "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null)
}

# ---- chat2api -------------------------------------------------------------
SLOW_TEXT=$(python3 -c "print(' '.join('token%d' % i for i in range($SLOW_WORDS)))")
PROXIED_TEXT=$(python3 -c "print(' '.join('token%d' % i for i in range($PROXIED_WORDS)))")
C2A_PID=
BACK_PID=
C2A_PROXIED=1
# The proxied config, with the bench key's rules when KEY_RULES asks for them.
C2A_BENCH_CONFIG=$BENCH/chat2api-bench.json
if [[ -n ${KEY_RULES:-} ]]; then
    SHARED=""
    if [[ $KEY_RULES == redis ]]; then
        REDIS_PORT=$(free_port)
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
        PIDS+=("$!")
        for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
        SHARED=redis://127.0.0.1:$REDIS_PORT/0
    fi
    C2A_BENCH_CONFIG=$WORK/chat2api-bench-rules.json
    python3 - "$BENCH/chat2api-bench.json" "$C2A_BENCH_CONFIG" "$SHARED" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["apiKeys"][0].update({"rpm": 10**9, "tpm": 10**11})
if sys.argv[3]:
    c["sharedState"] = {"redis": sys.argv[3]}
json.dump(c, open(sys.argv[2], "w"))
PY
    log "key rules: ${KEY_RULES}${SHARED:+ ($SHARED)}"
fi
start_chat2api() { # config port log -> sets STARTED_PID, waits for /health
    BENCH_UPSTREAM_PORT=$UP BENCH_UPSTREAM_SSE_PORT=$UPS BENCH_SLOW_TEXT=$SLOW_TEXT \
        BENCH_BACK_PORT=$BACK BENCH_PROXIED_TEXT=$PROXIED_TEXT \
        "${ON_SERVER[@]}" "$CHAT2API_BIN" --config "$1" --port "$2" 2>>"$3" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    wait_http "http://127.0.0.1:$2/health" && kill -0 "$STARTED_PID" 2>/dev/null
}
start_c2a() { # config
    local rc=0
    start_chat2api "$1" "$C2A" "$WORK/c2a.log" || rc=1
    C2A_PID=$STARTED_PID
    return $rc
}
stop_pid() { # pid
    [[ -n $1 ]] || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
stop_c2a() {
    stop_pid "$C2A_PID"
    C2A_PID=
}
stop_back() {
    stop_pid "$BACK_PID"
    BACK_PID=
}
c2a_config() { ((C2A_PROXIED)) && echo "$C2A_BENCH_CONFIG" || echo "$BENCH/chat2api-bench-mockonly.json"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---- sanity: every target answers what a client expects --------------------
BODY_FILE=$WORK/body.json
post() { # port model stream -> prints status and body
    local s=""
    [[ $3 == 1 ]] && s=',"stream":true'
    curl -s -m 5 -w '\n%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]$s}" \
        "http://127.0.0.1:$1/v1/chat/completions"
}
check() { # label port model stream must-contain
    local out
    out=$(post "$2" "$3" "$4" || true)
    if [[ ${out##*$'\n'} == 200 && $out == *"$5"* ]]; then return 0; fi
    log "sanity check failed for $1: $(printf %s "$out" | head -c 400)"
    return 1
}
check upstream "$UP" DeepSeek-V3.2 0 '"chat.completion"' || die "upstream broken"
check upstream-sse "$UPS" DeepSeek-V3.2 1 'data: [DONE]' || die "upstream sse broken"
check nginx "$NGX" DeepSeek-V3.2 0 '"chat.completion"' || die "nginx proxy broken"
check nginx-sse "$NGXS" DeepSeek-V3.2 1 'data: [DONE]' || die "nginx sse proxy broken"

if ! start_c2a "$C2A_BENCH_CONFIG" ||
    ! check chat2api "$C2A" DeepSeek-V3.2 0 '"model":"DeepSeek-V3.2"' ||
    ! check chat2api-sse "$C2A" DeepSeek-V3.2-stream 1 'data: [DONE]'; then
    log "chat2api cannot proxy to the upstream yet (see below); measuring the mock-only path"
    tail -n 5 "$WORK/c2a.log" >&2 || true
    C2A_PROXIED=0
    stop_c2a
    start_c2a "$BENCH/chat2api-bench-mockonly.json" || die "chat2api does not start: $(tail -n 5 "$WORK/c2a.log")"
fi
check chat2api-mock "$C2A" mock-echo 0 '"chat.completion"' || die "chat2api mock path broken"
stop_c2a
: >"$WORK/c2a.log"

# ---- one measurement -------------------------------------------------------
ticks() { # pids... -> "utime stime", each summed over the pids
    # Fields after "(comm) ": state is [0], utime [11], stime [12] (proc(5)).
    # For a multi-threaded process the leader's line covers all its threads.
    local p usr=0 sys=0 f
    for p in "$@"; do
        read -r -a f <<<"$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null)" || continue
        ((${#f[@]} > 12)) || continue
        usr=$((usr + f[11])); sys=$((sys + f[12]))
    done
    echo "$usr $sys"
}
RAW=$WORK/raw.tsv
printf 'run\tscenario\tconns\ttarget\trps\tp50_us\tp99_us\tcpu_us_req\tupstream_cpu_us_req\trequests\terrors\tkernel_pct\n' >"$RAW"

# measure run scenario conns duration target port model stream proxy-pids...
measure() {
    local run=$1 scen=$2 conns=$3 dur=$4 target=$5 port=$6 model=$7 stream=$8
    shift 8
    local proxy_pids=("$@") up_pids
    up_pids=($(nginx_pids "$up_PID"))
    local c0 u0 c1 u1 out line
    c0=$(ticks "${proxy_pids[@]}"); u0=$(ticks "${up_pids[@]}")
    out=$(BENCH_KEY=$KEY BENCH_MODEL=$model BENCH_STREAM=$stream \
        "${ON_WRK[@]}" wrk -t1 -c"$conns" -d"${dur}s" --timeout 5s --latency \
        -s "$BENCH/chat.lua" "http://127.0.0.1:$port" 2>&1) || true
    c1=$(ticks "${proxy_pids[@]}"); u1=$(ticks "${up_pids[@]}")
    line=$(grep '^WRK_RESULT' <<<"$out") || { log "wrk failed for $target: $out"; return 0; }
    python3 - "$run" "$scen" "$conns" "$target" "$CLK_TCK" "$c0" "$c1" "$u0" "$u1" "$line" >>"$RAW" <<'EOF'
import sys
run, scen, conns, target, hz, c0, c1, u0, u1, line = sys.argv[1:]
kv = dict(x.split("=") for x in line.split()[1:])
req = int(kv["requests"]); dur = int(kv["duration_us"]) / 1e6
errors = sum(int(kv[k]) for k in kv if k.startswith("err_"))
# c0 c1 u0 u1 are "utime stime" tick pairs
d = lambda a, b: [int(y) - int(x) for x, y in zip(a.split(), b.split())]
per = lambda a, b: sum(d(a, b)) * 1e6 / int(hz) / req if req else float("nan")
kern = lambda a, b: 100.0 * d(a, b)[1] / sum(d(a, b)) if sum(d(a, b)) else float("nan")
cpu, kpct = (per(c0, c1), kern(c0, c1)) if target != "direct" else (per(u0, u1), kern(u0, u1))
print(f"{run}\t{scen}\t{conns}\t{target}\t{req/dur:.0f}\t{float(kv['p50_us']):.1f}\t{float(kv['p99_us']):.1f}"
      f"\t{cpu:.2f}\t{per(u0, u1):.2f}\t{req}\t{errors}\t{kpct:.0f}")
EOF
    tail -n 1 "$RAW" | awk -F'\t' '{printf "[e2e]   %-8s c%-3s %-14s %8s req/s  p50 %8s us  p99 %8s us  cpu %7s us/req (kernel %s%%)  errors %s\n", $2, $3, $4, $5, $6, $7, $8, $12, $11}' >&2
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
        log "    wrk: $(grep 'Non-2xx\|Socket errors' <<<"$out" | tr '\n' ' ')"
    fi
}

# target name -> "port model pid-list" for the chat or sse scenario
target_args() { # scenario target
    case $1/$2 in
        chat/direct) echo "$UP DeepSeek-V3.2 0 $up_PID" ;;
        chat/nginx) echo "$NGX DeepSeek-V3.2 0 $(nginx_pids "$ngx_PID")" ;;
        chat/chat2api) echo "$C2A DeepSeek-V3.2 0 $C2A_PID" ;;
        chat/chat2api-mock) echo "$C2A mock-echo 0 $C2A_PID" ;;
        sse/direct) echo "$UPS DeepSeek-V3.2 1 $up_PID" ;;
        sse/nginx) echo "$NGXS DeepSeek-V3.2 1 $(nginx_pids "$ngx_PID")" ;;
        sse/chat2api) echo "$C2A DeepSeek-V3.2-stream 1 $C2A_PID" ;;
    esac
}

STREAM_RAW=$WORK/streams.tsv
printf 'run\tn\topened\topen_at_measure\terrors\tramp_s\trss_idle_kib\trss_open_kib\trss_after_close_kib\tper_stream_kib\n' >"$STREAM_RAW"
PROXIED_RAW=$WORK/proxied.tsv
printf 'run\tn_asked\tn\topened\topen_at_measure\terrors\tramp_s\trss_idle_kib\trss_open_kib\trss_after_close_kib\tper_stream_kib\tback_rss_idle_kib\tback_rss_open_kib\tback_rss_after_close_kib\tfds_open\tfds_after_close\tback_fds_after_close\tfirst_error\n' >"$PROXIED_RAW"
BURST_RAW=$WORK/burst.txt
: >"$BURST_RAW"
IDLE_RAW=$WORK/idle.tsv
printf 'run\tidle_rss_kib\tafter_load_rss_kib\n' >"$IDLE_RAW"

log "machine: $NPROC cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), fd limit $FD_LIMIT"
if ((PIN)); then
    log "pinning: wrk on cpu $WRK_CPU; upstream, nginx and chat2api on cpu $SERVER_CPU"
else
    log "pinning: none (every process shares all $NPROC cpus)"
fi
log "streamed answer: $((SSE_EVENTS + 2)) chunk events and [DONE], ${#SSE_ANSWER} bytes as configured"
log "chat2api: $CHAT2API_BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)), proxied path: $( ((C2A_PROXIED)) && echo yes || echo 'NO (upstream client missing)')"

for run in $(seq "$RUNS"); do
    log "run $run/$RUNS"
    start_c2a "$(c2a_config)" || die "chat2api did not start: $(tail -n 5 "$WORK/c2a.log")"
    sleep 0.5
    idle=$(rss_kib "$C2A_PID")
    # Rotate the order each run so drift in the machine's background load
    # does not always hit the same target.
    case $((run % 3)) in
        1) order=(direct nginx chat2api) ;;
        2) order=(nginx chat2api direct) ;;
        0) order=(chat2api direct nginx) ;;
    esac
    scenarios=()
    [[ -n ${SKIP_LOAD:-} ]] || scenarios+=(chat)
    [[ -n ${SKIP_LOAD:-} || -n ${SKIP_SSE:-} ]] || scenarios+=(sse)
    for scen in ${scenarios[@]+"${scenarios[@]}"}; do
        targets=()
        for t in "${order[@]}"; do
            [[ $t == chat2api && $C2A_PROXIED == 0 ]] && continue
            targets+=("$t")
        done
        [[ $scen == chat ]] && targets+=(chat2api-mock)
        for t in "${targets[@]}"; do # warm-up: fill pools, fault in pages
            a=($(target_args "$scen" "$t"))
            BENCH_KEY=$KEY BENCH_MODEL=${a[1]} BENCH_STREAM=${a[2]} "${ON_WRK[@]}" \
                wrk -t1 -c"$CONNS" -d1s -s "$BENCH/chat.lua" "http://127.0.0.1:${a[0]}" >/dev/null 2>&1 || true
        done
        for t in "${targets[@]}"; do
            a=($(target_args "$scen" "$t"))
            measure "$run" "$scen" "$CONNS" "$DURATION" "$t" "${a[@]}"
        done
        for t in "${targets[@]}"; do
            [[ $t == chat2api-mock ]] && continue
            a=($(target_args "$scen" "$t"))
            measure "$run" "$scen" 1 "$DURATION_C1" "$t" "${a[@]}"
        done
    done
    printf '%s\t%s\t%s\n' "$run" "$idle" "$(rss_kib "$C2A_PID")" >>"$IDLE_RAW"
    grep -i 'panic' "$WORK/c2a.log" >&2 && log "chat2api panicked during the load runs (above)"
    kill -0 "$C2A_PID" 2>/dev/null || log "chat2api died during run $run: $(tail -n 5 "$WORK/c2a.log")"
    stop_c2a

    if [[ -z ${SKIP_STREAMS:-} ]]; then
        for n in $STREAMS; do
            if ((n + 200 > FD_LIMIT)); then
                log "skipping $n streams: fd limit $FD_LIMIT"
                continue
            fi
            start_c2a "$(c2a_config)" || die "chat2api did not start: $(tail -n 5 "$WORK/c2a.log")"
            sleep 0.5
            idle=$(rss_kib "$C2A_PID")
            line=$(timeout 120 python3 "$BENCH/open_streams.py" --port "$C2A" --pid "$C2A_PID" --n "$n" \
                --key "$KEY" --timeout 60 || true)
            line=$(grep '^STREAMS_RESULT' <<<"$line" || echo "STREAMS_RESULT error=no_output")
            log "  streams: $line"
            python3 - "$run" "$idle" "$line" >>"$STREAM_RAW" <<'EOF'
import sys
run, idle, line = sys.argv[1:]
kv = dict(x.split("=", 1) for x in line.split()[1:])
g = lambda k: kv.get(k, "nan")
opened = int(g("open_at_measure")) if g("open_at_measure") != "nan" else 0
per = (int(g("rss_open_kib")) - int(idle)) / opened if opened else float("nan")
print(f"{run}\t{g('n')}\t{g('opened')}\t{g('open_at_measure')}\t{g('errors')}\t{g('ramp_s')}\t{idle}"
      f"\t{g('rss_open_kib')}\t{g('rss_after_close_kib')}\t{per:.1f}")
EOF
            stop_c2a
        done
    fi

    if [[ -z ${SKIP_BURST:-} ]]; then
        # Memory handed back after a burst of large request bodies.
        start_c2a "$(c2a_config)" || die "chat2api did not start: $(tail -n 5 "$WORK/c2a.log")"
        sleep 0.5
        line=$(timeout 120 python3 "$BENCH/burst.py" --port "$C2A" --pid "$C2A_PID" --n "${BURST_N:-8}" --mib "${BURST_MIB:-49}" --key "$KEY" || true)
        line=$(grep '^BURST_RESULT' <<<"$line" || echo "BURST_RESULT error=no_output")
        log "  burst: $line"
        echo "$run ${line#BURST_RESULT }" >>"$BURST_RAW"
        stop_c2a
    fi

    if [[ -z ${SKIP_PROXIED_STREAMS:-} ]]; then
        for n_asked in $STREAMS; do
            n=$n_asked
            if ((2 * n + 100 > FD_LIMIT)); then
                n=$(((FD_LIMIT - 100) / 2))
                log "proxied streams: $n instead of $n_asked (the front needs 2 fds per stream; fd limit $FD_LIMIT)"
            fi
            start_chat2api "$BENCH/chat2api-bench-proxied-back.json" "$BACK" "$WORK/back.log" ||
                die "back chat2api did not start: $(tail -n 5 "$WORK/back.log")"
            BACK_PID=$STARTED_PID
            start_c2a "$BENCH/chat2api-bench-proxied-front.json" || die "front chat2api did not start: $(tail -n 5 "$WORK/c2a.log")"
            # Sanity: the stream goes through the front, gets the back's events
            # and has its model rewritten (curl stops it after 3 s).
            out=$(curl -sN -m 3 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
                -d '{"model":"proxied-slow","stream":true,"messages":[{"role":"user","content":"Hello!"}]}' \
                "http://127.0.0.1:$C2A/v1/chat/completions" || true)
            [[ $out == *'"model":"proxied-slow"'*'token0'* ]] ||
                die "proxied stream sanity check failed: $(printf %s "$out" | head -c 400) $(tail -n 3 "$WORK/c2a.log")"
            sleep 1.5 # let the front drop the sanity stream's upstream connection
            idle=$(rss_kib "$C2A_PID")
            back_idle=$(rss_kib "$BACK_PID")
            line=$(timeout 150 python3 "$BENCH/open_streams.py" --port "$C2A" --pid "$C2A_PID" --n "$n" \
                --model proxied-slow --upstream-pid "$BACK_PID" --key "$KEY" --timeout 90 || true)
            line=$(grep '^STREAMS_RESULT' <<<"$line" || echo "STREAMS_RESULT error=no_output")
            log "  proxied streams: $line"
            python3 - "$run" "$n_asked" "$idle" "$back_idle" "$line" >>"$PROXIED_RAW" <<'EOF'
import sys
run, n_asked, idle, back_idle, line = sys.argv[1:]
kv = dict(x.split("=", 1) for x in line.split()[1:])
g = lambda k: kv.get(k, "nan")
opened = int(g("open_at_measure")) if g("open_at_measure") != "nan" else 0
per = (int(g("rss_open_kib")) - int(idle)) / opened if opened else float("nan")
print("\t".join([run, n_asked, g("n"), g("opened"), g("open_at_measure"), g("errors"), g("ramp_s"), idle,
                 g("rss_open_kib"), g("rss_after_close_kib"), f"{per:.1f}", back_idle, g("up_rss_open_kib"),
                 g("up_rss_after_close_kib"), g("fds_open"), g("fds_after_close"), g("up_fds_after_close"),
                 g("first_error")]))
EOF
            grep -i 'panic' "$WORK/c2a.log" "$WORK/back.log" >&2 && log "a chat2api panicked during the proxied streams (above)"
            kill -0 "$C2A_PID" 2>/dev/null || log "the front chat2api died: $(tail -n 5 "$WORK/c2a.log")"
            kill -0 "$BACK_PID" 2>/dev/null || log "the back chat2api died: $(tail -n 5 "$WORK/back.log")"
            stop_c2a
            stop_back
        done
    fi
done

# ---- report -----------------------------------------------------------------
[[ -n ${RESULTS:-} ]] && { cat "$RAW"; echo; cat "$IDLE_RAW"; echo; cat "$STREAM_RAW"; echo; cat "$PROXIED_RAW"; } >>"$RESULTS"
python3 - "$RAW" "$IDLE_RAW" "$STREAM_RAW" "$C2A_PROXIED" "$PROXIED_RAW" <<'EOF'
import csv, statistics, sys
raw, idle, streams, proxied, proxied_streams = sys.argv[1:]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
med = lambda xs: statistics.median(xs) if xs else float("nan")
def pick(scen, conns, target, col, run=None):
    return [float(r[col]) for r in rows if r["scenario"] == scen and r["conns"] == conns
            and r["target"] == target and (run is None or r["run"] == run)]
runs = sorted({r["run"] for r in rows}, key=int)
print("\n== per run (cpu = proxy process CPU per request; for direct, the upstream's own) ==")
print(f"{'run':>3} {'scenario':8} {'conns':>5} {'target':14} {'req/s':>8} {'p50 us':>8} {'p99 us':>9} {'cpu us/req':>10} {'kernel %':>8} {'errors':>6}")
for r in rows:
    print(f"{r['run']:>3} {r['scenario']:8} {r['conns']:>5} {r['target']:14} {r['rps']:>8} {r['p50_us']:>8} {r['p99_us']:>9} {r['cpu_us_req']:>10} {r['kernel_pct']:>8} {r['errors']:>6}")
print("\n== medians over runs ==")
print(f"{'scenario':8} {'conns':>5} {'target':14} {'req/s':>8} {'p50 us':>8} {'p99 us':>9} {'cpu us/req':>10} {'kernel %':>8} {'added p50':>9}")
keys = []
for r in rows:
    k = (r["scenario"], r["conns"], r["target"])
    if k not in keys: keys.append(k)
for s, c, t in keys:
    added = ""
    if t != "direct":
        # per-run difference to the direct run of the same run, then median
        d = [a - b for run in runs for a, b in zip(pick(s, c, t, "p50_us", run), pick(s, c, "direct", "p50_us", run))]
        added = f"{med(d):+.1f}"
    print(f"{s:8} {c:>5} {t:14} {med(pick(s,c,t,'rps')):>8.0f} {med(pick(s,c,t,'p50_us')):>8.1f} "
          f"{med(pick(s,c,t,'p99_us')):>9.1f} {med(pick(s,c,t,'cpu_us_req')):>10.2f} {med(pick(s,c,t,'kernel_pct')):>8.0f} {added:>9}")
print("\n== ratios (per run, then median) ==")
for s, c in sorted({(k[0], k[1]) for k in keys}):
    for t in ("chat2api", "chat2api-mock"):
        ratios = []
        for run in runs:
            a, b = pick(s, c, t, "cpu_us_req", run), pick(s, c, "nginx", "cpu_us_req", run)
            if a and b and b[0] > 0: ratios.append(a[0] / b[0])
        if ratios:
            print(f"{s} c{c}: {t} CPU/req / nginx CPU/req = {med(ratios):.2f}  (runs: {', '.join(f'{x:.2f}' for x in ratios)}; goal <= 1.0, long run 0.8)")
        rps = []
        for run in runs:
            a, b = pick(s, c, t, "rps", run), pick(s, c, "nginx", "rps", run)
            if a and b and b[0] > 0: rps.append(a[0] / b[0])
        if rps:
            print(f"{s} c{c}: {t} req/s / nginx req/s = {med(rps):.2f}  (runs: {', '.join(f'{x:.2f}' for x in rps)}; goal >= 1.0)")
    for t in ("chat2api", "nginx"):
        d = [a - b for run in runs for a, b in zip(pick(s, c, t, "p50_us", run), pick(s, c, "direct", "p50_us", run))]
        if d:
            print(f"{s} c{c}: {t} added median latency = {med(d):+.1f} us  (runs: {', '.join(f'{x:+.1f}' for x in d)})")
irows = list(csv.DictReader(open(idle), delimiter="\t"))
if irows:
    v = [int(r["idle_rss_kib"]) for r in irows]
    w = [int(r["after_load_rss_kib"]) for r in irows]
    print(f"\nchat2api idle RSS: median {med(v)/1024:.2f} MiB (runs: {', '.join(f'{x/1024:.2f}' for x in v)}; target <= 8 MiB); "
          f"after the load runs: {med(w)/1024:.2f} MiB")
srows = list(csv.DictReader(open(streams), delimiter="\t"))
for n in sorted({r["n"] for r in srows if r["n"] != "nan"}, key=int):
    rs = [r for r in srows if r["n"] == n]
    rss = [int(r["rss_open_kib"]) for r in rs if r["rss_open_kib"] != "nan"]
    per = [float(r["per_stream_kib"]) for r in rs if r["per_stream_kib"] != "nan"]
    print(f"chat2api with {n} open streams: RSS median {med(rss)/1024:.1f} MiB, {med(per):.1f} KiB/stream above idle "
          f"(open at measurement: {', '.join(r['open_at_measure'] for r in rs)}; errors: {', '.join(r['errors'] for r in rs)}; "
          f"ramp s: {', '.join(r['ramp_s'] for r in rs)}; RSS after close MiB: {', '.join('%.1f' % (int(r['rss_after_close_kib'])/1024) for r in rs if r['rss_after_close_kib'] != 'nan')})")
prows = list(csv.DictReader(open(proxied_streams), delimiter="\t"))
num = lambda x: x not in ("nan", "", None)
for n_asked in sorted({r["n_asked"] for r in prows}, key=int):
    rs = [r for r in prows if r["n_asked"] == n_asked]
    ns = sorted({r["n"] for r in rs})
    rss = [int(r["rss_open_kib"]) for r in rs if num(r["rss_open_kib"])]
    per = [float(r["per_stream_kib"]) for r in rs if num(r["per_stream_kib"])]
    idl = [int(r["rss_idle_kib"]) for r in rs]
    back = [int(r["back_rss_open_kib"]) for r in rs if num(r["back_rss_open_kib"])]
    n_txt = n_asked if ns == [n_asked] else f"{'/'.join(ns)} (asked {n_asked}; fd limit)"
    extra = ""
    if ns != [n_asked] and per:
        extra = f"; extrapolated to {n_asked}: {(med(idl) + int(n_asked) * med(per)) / 1024:.1f} MiB"
    print(f"chat2api with {n_txt} open PROXIED streams: front RSS median {med(rss)/1024:.1f} MiB, "
          f"{med(per):.1f} KiB/stream above idle{extra} "
          f"(open at measurement: {', '.join(r['open_at_measure'] for r in rs)}; errors: {', '.join(r['errors'] for r in rs)}; "
          f"ramp s: {', '.join(r['ramp_s'] for r in rs)}; front idle MiB: {', '.join('%.2f' % (x/1024) for x in idl)}; "
          f"front RSS after close MiB: {', '.join('%.1f' % (int(r['rss_after_close_kib'])/1024) for r in rs if num(r['rss_after_close_kib']))}; "
          f"back RSS idle/open MiB: {', '.join('%.1f/%.1f' % (int(r['back_rss_idle_kib'])/1024, int(r['back_rss_open_kib'])/1024) for r in rs if num(r['back_rss_open_kib']))}; "
          f"fds open/after close: front {', '.join(r['fds_open'] + '/' + r['fds_after_close'] for r in rs)}, "
          f"back after close {', '.join(r['back_fds_after_close'] for r in rs)})")
    errs = [r["first_error"] for r in rs if r["first_error"] not in ("-", "nan")]
    if errs:
        print(f"  first errors: {'; '.join(errs)}")
if proxied == "0":
    print("\nNOTE: chat2api could not proxy to the upstream (no upstream client yet); only its mock path was measured.")
EOF
if [[ -s $BURST_RAW ]]; then
    echo
    echo "== memory after a burst of large request bodies (run, then KiB) =="
    cat "$BURST_RAW"
fi
