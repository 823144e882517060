#!/usr/bin/env bash
# Heap allocations per request, chat2api beside nginx, counted exactly by
# valgrind's DHAT (instructions, not time: repeatable on a busy machine).
# Each proxy runs under DHAT in front of the same instant nginx upstream;
# N plain and N streamed (66-event) requests go through one keep-alive
# connection; a run with no requests is the baseline subtracted.
#
#   bash benches/e2e/allocs.sh            # N=500
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-500}
# The C allocator, which DHAT sees (mimalloc maps its own memory).
if [[ -z ${CHAT2API_BIN:-} ]]; then
    (cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/system-alloc" cargo build --release --quiet --features system-alloc)
fi
BIN=${CHAT2API_BIN:-$ROOT/target/system-alloc/release/chat2api}
KEY=sk-bench-5f3c9a1e7d2b4c68
WORK=$(mktemp -d /tmp/c2a-allocs.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
# shellcheck source=benches/e2e/upstream.sh
source "$ROOT/benches/e2e/upstream.sh"
start_upstream 64

drive() { # port n model stream
    python3 - "$@" "$KEY" <<'PY'
import http.client, json, sys
port, n, model, stream, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5]
body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Hello!"}]})
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    assert r.status == 200, (r.status, data[:200])
PY
}

blocks() { # dhat output file -> total blocks allocated
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(p["tbk"] for p in d["pps"]))' "$1"
}

chat2api_blocks() { # n model stream -> blocks
    local p; p=$(port)
    BENCH_UPSTREAM_PORT=$UP BENCH_UPSTREAM_SSE_PORT=$UPS BENCH_SLOW_TEXT=x BENCH_BACK_PORT=1 BENCH_PROXIED_TEXT=x \
        valgrind -q --tool=dhat --dhat-out-file="$WORK/c2a.dhat" "$BIN" --config "$ROOT/benches/e2e/chat2api-bench.json" \
        --port "$p" --management-port 0 2>/dev/null &
    local pid=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/health" && break; sleep 0.2; done
    drive "$p" 3 "$2" "$3" # warm: pools, thread-local buffers
    drive "$p" "$1" "$2" "$3"
    kill -TERM "$pid"; wait "$pid" || true
    blocks "$WORK/c2a.dhat"
}

nginx_blocks() { # n stream -> blocks
    local p; p=$(port)
    local up=$UP; [[ $2 == 1 ]] && up=$UPS
    cat >"$WORK/ngx.conf" <<CONF
worker_processes 1; master_process off; daemon off; pid $WORK/ngx.pid; error_log $WORK/ngx.err warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 100000000;
  upstream u { server 127.0.0.1:$up; keepalive 256; }
  server { listen 127.0.0.1:$p; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }
CONF
    valgrind -q --tool=dhat --dhat-out-file="$WORK/ngx.dhat" nginx -p "$WORK" -c "$WORK/ngx.conf" 2>/dev/null &
    local pid=$!
    for _ in $(seq 100); do curl -s -o /dev/null -X POST "http://127.0.0.1:$p/v1/chat/completions" && break; sleep 0.2; done
    drive "$p" 3 DeepSeek-V3.2 "$2"
    drive "$p" "$1" DeepSeek-V3.2 "$2"
    kill -QUIT "$pid"; wait "$pid" || true
    blocks "$WORK/ngx.dhat"
}

per_request() { # base with-n -> per request
    python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]):.1f}')" "$1" "$2" "$N"
}
echo "heap allocations per request (DHAT, N=$N through one keep-alive connection, baseline subtracted)"
for stream in 0 1; do
    name=$([[ $stream == 1 ]] && echo "streamed (66 events)" || echo "plain")
    model=$([[ $stream == 1 ]] && echo DeepSeek-V3.2-stream || echo DeepSeek-V3.2)
    c0=$(chat2api_blocks 0 "$model" "$stream"); c1=$(chat2api_blocks "$N" "$model" "$stream")
    n0=$(nginx_blocks 0 "$stream"); n1=$(nginx_blocks "$N" "$stream")
    printf '%-22s chat2api %6s   nginx %6s\n' "$name" "$(per_request "$c0" "$c1")" "$(per_request "$n0" "$n1")"
done
