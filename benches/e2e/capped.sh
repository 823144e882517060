#!/usr/bin/env bash
# A burst from cold against a small upstream (issue 20, case 2): an asyncio
# server with a 128-entry accept queue that answers after 20 ms
# (benches/e2e/small_upstream.py), behind chat2api, hit by CONNS=1000
# client connections at once for DURATION=5s, once per cap in CAPS
# (limits.upstreamMaxConns; 0 = no cap). Prints, per cap: req/s, latency
# p50/p99/max, the upstream connections accepted, and the kernel's
# TcpExtListenOverflows/ListenDrops during the run (SYNs dropped on a full
# accept queue, each retried by Linux after 1 s). Then the same through
# nginx 1.22 (2 workers, keepalive 1024): open-source nginx has `max_conns`
# but not its `queue` (NGINX Plus only), so at a cap it would answer 502;
# its row is uncapped. All on 127.0.0.1, nothing pinned.
#
#   bash benches/e2e/capped.sh
#   CAPS="0 64 256" CONNS=2000 bash benches/e2e/capped.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${CHAT2API_BIN:-$ROOT/target/release/chat2api}
CAPS=${CAPS:-0 256}
CONNS=${CONNS:-1000}
DURATION=${DURATION:-5s}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release -q)
ulimit -n 65536 2>/dev/null || true
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
counter() { nstat -az "$1" | awk -v n="$1" '$1 == n { print $2 }'; }
printf 'cap\treq_s\tp50_ms\tp99_ms\tmax_ms\tupstream_conns\tlisten_overflows\tlisten_drops\tnon2xx\n'
for cap in $CAPS nginx; do
    UP=$(free_port); C2A=$(free_port)
    python3 "$ROOT/benches/e2e/small_upstream.py" --port "$UP" >"$WORK/up.out" &
    UP_PID=$!
    cat >"$WORK/front.json" <<J
{"host": "127.0.0.1", "port": $C2A, "accessLog": "off", "management": {"enabled": false},
 "limits": {"upstreamMaxConns": $cap, "upstreamQueueTimeout": 30000},
 "requestTimeout": 60000,
 "apiKeys": ["sk-bench-5f3c9a1e7d2b4c68"],
 "providers": [{"id": "small", "type": "openai", "baseUrl": "http://127.0.0.1:$UP/v1",
   "accounts": [{"id": "a", "apiKey": "sk-up"}], "models": {"DeepSeek-V3.2": "small"}}]}
J
    if [[ $cap == nginx ]]; then
        mkdir -p "$WORK/ngx/logs"
        cat >"$WORK/ngx/nginx.conf" <<N
worker_processes 2; daemon off; error_log $WORK/ngx/error.log; pid $WORK/ngx/nginx.pid;
events { worker_connections 65536; }
http { access_log off; keepalive_requests 100000000;
  upstream small { server 127.0.0.1:$UP; keepalive 1024; }
  server { listen 127.0.0.1:$C2A backlog=4096;
    location / { proxy_pass http://small; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
N
        nginx -p "$WORK/ngx/" -c "$WORK/ngx/nginx.conf" &
    else
        "$BIN" --config "$WORK/front.json" >"$WORK/c2a.out" 2>&1 &
    fi
    C2A_PID=$!
    PIDS=("$UP_PID" "$C2A_PID")
    sleep 0.7
    o0=$(counter TcpExtListenOverflows); d0=$(counter TcpExtListenDrops)
    out=$(wrk -t 2 -c "$CONNS" -d "$DURATION" --timeout 30s --latency -s "$ROOT/benches/e2e/chat.lua" "http://127.0.0.1:$C2A" 2>&1)
    o1=$(counter TcpExtListenOverflows); d1=$(counter TcpExtListenDrops)
    kill "$C2A_PID"; wait "$C2A_PID" 2>/dev/null || true
    kill -TERM "$UP_PID"; wait "$UP_PID" 2>/dev/null || true
    accepted=$(awk '/^ACCEPTED/ { print $2 }' "$WORK/up.out")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    max=$(awk '/Latency/ && !/Distribution/ { print $4; exit }' <<<"$out")
    non2xx=$(awk '/Non-2xx/ { print $5 }' <<<"$out")
    ms() { python3 -c 'import sys,re; v=sys.argv[1]; m=re.match(r"([\d.]+)(us|ms|s|m)$", v); print("-" if not m else round(float(m[1])*{"us":1e-3,"ms":1,"s":1e3,"m":6e4}[m[2]],2))' "$1"; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cap" "$rps" "$(ms "$p50")" "$(ms "$p99")" "$(ms "$max")" \
        "${accepted:--}" "$((o1 - o0))" "$((d1 - d0))" "${non2xx:-0}"
done
