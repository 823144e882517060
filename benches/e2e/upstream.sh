# Sourced by the benches that measure beside nginx (benches/e2e/profile.sh,
# allocs.sh, p99_bound.sh, messages.sh, benches/uring/): the instant upstream they
# measure in front of, an nginx (1 worker, from memory/disk, keep-alive)
# that answers POST /v1/chat/completions with a 395-byte chat.completion on
# $UP and, on $UPS, a static text/event-stream of a role event, N content
# events, a stop event and [DONE]. Needs WORK (a directory) and PIDS (an
# array the caller kills on exit).

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_upstream() { # content-events -> sets UP and UPS
    UP=$(port)
    UPS=$(port)
    python3 - "$WORK" "$1" <<'PY'
import os, sys
work, n = sys.argv[1], int(sys.argv[2])
chunk = lambda d, f: 'data: {"id":"chatcmpl-bench0001","object":"chat.completion.chunk","created":1700000000,"model":"deepseek-chat","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}\n\n' % (d, f)
body = chunk('{"role":"assistant","content":""}', 'null') + ''.join(chunk('{"content":" word%d"}' % i, 'null') for i in range(n)) + chunk('{}', '"stop"') + 'data: [DONE]\n\n'
os.makedirs(f"{work}/www/v1/chat", exist_ok=True)
open(f"{work}/www/v1/chat/completions", "w").write(body)
PY
    chmod -R a+rX "$WORK" # nginx's workers run as an unprivileged user
    local json='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1700000000,"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"Keep-alive lets the proxy reuse warm connections."},"finish_reason":"stop"}],"usage":{"prompt_tokens":52,"completion_tokens":17,"total_tokens":69}}'
    cat >"$WORK/up.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/up.pid; error_log $WORK/up.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$UP; location = /v1/chat/completions { default_type application/json; return 200 '$json'; } }
  server { listen 127.0.0.1:$UPS; location = /v1/chat/completions { root $WORK/www; default_type text/event-stream; error_page 405 =200 \$uri; } } }
CONF
    nginx -p "$WORK" -c "$WORK/up.conf" 2>/dev/null &
    PIDS+=($!)
    sleep 0.5
}

start_nginx_proxy() { # -> sets NGX (in front of UP), NGXS (in front of UPS, unbuffered) and NGX_MASTER
    NGX=$(port)
    NGXS=$(port)
    cat >"$WORK/ngx.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/ngx.pid; error_log $WORK/ngx.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  upstream a { server 127.0.0.1:$UP; keepalive 256; }
  upstream b { server 127.0.0.1:$UPS; keepalive 256; }
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://a; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server { listen 127.0.0.1:$NGXS; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }
CONF
    nginx -p "$WORK" -c "$WORK/ngx.conf" 2>/dev/null &
    PIDS+=($!)
    NGX_MASTER=$!
}
