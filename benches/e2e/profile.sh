#!/usr/bin/env bash
# Per-request counts behind the figures of benches/e2e/e2e.sh, for chat2api and
# nginx side by side: context switches and CPU migrations (perf stat),
# syscalls (strace -c), each under the same wrk load on the same instant
# upstream, nothing pinned. Needs perf (linux-perf), strace, nginx, wrk.
#
#   bash benches/e2e/profile.sh            # CONNS=64 DURATION=4 SSE_EVENTS=64
#   CONFIG=other.json bash benches/e2e/profile.sh   # chat2api with another bench config
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONNS=${CONNS:-64}
DURATION=${DURATION:-4}
SSE_EVENTS=${SSE_EVENTS:-64}
BIN=${CHAT2API_BIN:-$ROOT/target/release/chat2api}
KEY=sk-bench-5f3c9a1e7d2b4c68
WORK=$(mktemp -d /tmp/c2a-profile.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
# shellcheck source=benches/e2e/upstream.sh
source "$ROOT/benches/e2e/upstream.sh"
start_upstream "$SSE_EVENTS"
start_nginx_proxy
C2A=$(port)
BENCH_UPSTREAM_PORT=$UP BENCH_UPSTREAM_SSE_PORT=$UPS BENCH_SLOW_TEXT=x BENCH_BACK_PORT=1 BENCH_PROXIED_TEXT=x \
    "$BIN" --config "${CONFIG:-$ROOT/benches/e2e/chat2api-bench.json}" --port "$C2A" 2>/dev/null & PIDS+=($!)
C2A_PID=$!
sleep 1
NGX_PIDS="$NGX_MASTER $(cat /proc/$NGX_MASTER/task/*/children)"

load() { # port model stream seconds
    BENCH_KEY=$KEY BENCH_MODEL=$2 BENCH_STREAM=$3 wrk -t1 -c"$CONNS" -d"${4}s" -s "$ROOT/benches/e2e/chat.lua" "http://127.0.0.1:$1" |
        sed -n 's/.*requests=\([0-9]*\).*/\1/p'
}
measure() { # name port model stream pids...
    local name=$1 port=$2 model=$3 stream=$4; shift 4
    local pids; pids=$(echo "$@" | tr ' ' ',')
    load "$port" "$model" "$stream" 1 >/dev/null
    perf stat -x, -e task-clock,context-switches,cpu-migrations -p "$pids" -o "$WORK/perf" -- sleep "$DURATION" &
    local perf=$!
    local req; req=$(load "$port" "$model" "$stream" "$DURATION")
    wait "$perf" || true
    local cs mig
    cs=$(awk -F, '$3=="context-switches"{print $1}' "$WORK/perf")
    mig=$(awk -F, '$3=="cpu-migrations"{print $1}' "$WORK/perf")
    timeout $((DURATION + 2)) strace -c -f -o "$WORK/strace" -p "$pids" 2>/dev/null &
    local st=$!
    sleep 0.3
    local sreq; sreq=$(load "$port" "$model" "$stream" 2)
    sleep 0.5; kill -INT "$st" 2>/dev/null || true; wait "$st" 2>/dev/null || true
    python3 - "$name" "$req" "$cs" "$mig" "$sreq" "$WORK/strace" <<'PY'
import sys
name, req, cs, mig, sreq, path = sys.argv[1:]
req, sreq = int(req or 0), int(sreq or 0)
calls = {}
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[-1] not in ("syscall", "total") and f[0][0].isdigit():
        calls[f[-1]] = int(f[3])
top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
per = lambda n: n / sreq if sreq else float("nan")
print(f"{name:18} requests {req:>7}  ctx-switches/req {int(cs) / req if req else float('nan'):6.2f}  "
      f"migrations/req {int(mig) / req if req else float('nan'):6.3f}  syscalls/req {per(sum(calls.values())):5.2f}  "
      + " ".join(f"{k}={per(v):.2f}" for k, v in top))
PY
}
echo "nothing pinned, $(nproc) cpus, -c$CONNS, ${DURATION}s per figure; req = requests in the perf window"
measure "nginx plain" "$NGX" DeepSeek-V3.2 0 $NGX_PIDS
measure "chat2api plain" "$C2A" DeepSeek-V3.2 0 "$C2A_PID"
measure "nginx sse" "$NGXS" DeepSeek-V3.2 1 $NGX_PIDS
measure "chat2api sse" "$C2A" DeepSeek-V3.2-stream 1 "$C2A_PID"
