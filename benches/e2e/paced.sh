#!/usr/bin/env bash
# Paced streams, the AI-gateway shape (issue 20): a 64-frame answer paced
# at 20 ms a frame, from chat2api's mock on its own port ("the upstream"),
# asked for directly, through chat2api and through nginx 1.22
# (proxy_buffering off, keep-alive), at 1 and 64 concurrent streams; the
# time to first frame and the gaps between frames, and what each proxy
# adds (benches/e2e/paced.py). All on 127.0.0.1, nothing pinned.
#
#   bash benches/e2e/paced.sh            # builds the release binary if needed
#   CHAT2API_BIN=path STREAMS=3 bash benches/e2e/paced.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${CHAT2API_BIN:-$ROOT/target/release/chat2api}
STREAMS=${STREAMS:-3}
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release -q)
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); C2A=$(free_port); NGX=$(free_port)
cat >"$WORK/up.json" <<J
{"host": "127.0.0.1", "port": $UP, "management": {"enabled": false},
 "providers": [{"id": "mock", "type": "mock", "models": ["paced"], "tokenDelayMs": 20, "answerTokens": 64}]}
J
cat >"$WORK/front.json" <<J
{"host": "127.0.0.1", "port": $C2A, "management": {"enabled": false},
 "providers": [{"id": "up", "type": "openai", "baseUrl": "http://127.0.0.1:$UP/v1",
   "accounts": [{"id": "a", "apiKey": "sk-up"}], "models": ["paced"]}]}
J
mkdir -p "$WORK/ngx/logs"
cat >"$WORK/ngx/nginx.conf" <<N
worker_processes auto;
daemon off;
error_log $WORK/ngx/error.log;
pid $WORK/ngx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    upstream paced { server 127.0.0.1:$UP; keepalive 256; }
    server {
        listen 127.0.0.1:$NGX backlog=4096;
        location / {
            proxy_pass http://paced;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
N
"$BIN" --config "$WORK/up.json" 2>"$WORK/up.log" & PIDS+=($!)
"$BIN" --config "$WORK/front.json" 2>"$WORK/front.log" & PIDS+=($!)
nginx -p "$WORK/ngx/" -c "$WORK/ngx/nginx.conf" & PIDS+=($!)
for port in $UP $C2A $NGX; do
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
echo "chat2api: $BIN ($(git -C "$ROOT" rev-parse --short HEAD)), nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(nproc) cores"
python3 "$ROOT/benches/e2e/paced.py" "$UP" "$C2A" "$NGX" "$STREAMS"
