#!/usr/bin/env bash
# Throughput at a p99 bound (issue 20, the AI-gateway shape): the highest
# request rate each proxy sustains while its p99 latency stays under 1 ms and
# under 5 ms. An open-loop load (oha -q: requests are sent on a schedule,
# and --latency-correction times each from when it was due, so a slow
# answer cannot hold the next request back), 64 keep-alive connections,
# rates stepped up in RATES, each for DURATION seconds, chat2api (one worker
# per core, the bench config: key check, JSON validation, alias rewritten)
# and nginx 1.22 (1 worker, keep-alive upstream) interleaved at every step,
# both in front of the same instant nginx upstream (plain answer, and a
# 66-event stream). Nothing pinned: oha, the proxies and the upstream share
# the cores, as users run it.
#
#   bash benches/e2e/p99_bound.sh
#   RATES="5000 10000 20000" DURATION=5 SCENARIOS=plain bash benches/e2e/p99_bound.sh
# Needs oha (cargo install oha --version 1.16.0 --locked). Prints one row per
# step, then the bound rates per proxy and scenario.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RATES=${RATES:-2000 5000 10000 15000 20000 25000 30000 35000 40000 50000}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
SCENARIOS=${SCENARIOS:-plain sse}
BIN=${CHAT2API_BIN:-$ROOT/target/release/chat2api}
KEY=sk-bench-5f3c9a1e7d2b4c68
command -v oha >/dev/null || { echo "needs oha: cargo install oha --version 1.16.0 --locked" >&2; exit 1; }
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release --quiet)
WORK=$(mktemp -d /tmp/c2a-p99.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
# shellcheck source=benches/e2e/upstream.sh
source "$ROOT/benches/e2e/upstream.sh"
start_upstream 64
start_nginx_proxy
C2A=$(port)
BENCH_UPSTREAM_PORT=$UP BENCH_UPSTREAM_SSE_PORT=$UPS BENCH_SLOW_TEXT=x \
    "$BIN" --config "$ROOT/benches/e2e/chat2api-bench.json" --port "$C2A" --access-log off 2>"$WORK/c2a.err" &
PIDS+=($!)
sleep 1
body() { # model stream
    printf '{"model":"%s","messages":[{"role":"system","content":"You are a concise assistant. Answer in plain English and keep code blocks short."},{"role":"user","content":"What does HTTP keep-alive do?"},{"role":"assistant","content":"It reuses one TCP connection for several requests."},{"role":"user","content":"And why does that matter for a reverse proxy in front of an LLM API?"}],"temperature":0.7,"max_tokens":256%s}' \
        "$1" "$([[ $2 == 1 ]] && echo ',"stream":true')"
}
step() { # port model stream rate seconds -> "achieved_rps p50_ms p99_ms success_rate"
    oha --no-tui --output-format json -z "${5}s" -c "$CONNS" -q "$4" --latency-correction -m POST \
        -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d "$(body "$2" "$3")" \
        "http://127.0.0.1:$1/v1/chat/completions" 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin); s=r["summary"]; p=r["latencyPercentiles"]
print("%.0f %.3f %.3f %.4f" % (s["requestsPerSec"], p["p50"] * 1e3, p["p99"] * 1e3, s["successRate"]))'
}
RAW=$WORK/raw.tsv
printf 'scenario\tproxy\trate\tachieved_rps\tp50_ms\tp99_ms\tsuccess\n' | tee "$RAW"
for sc in $SCENARIOS; do
    if [[ $sc == plain ]]; then model=DeepSeek-V3.2 stream=0 ng=$NGX; else model=DeepSeek-V3.2-stream stream=1 ng=$NGXS; fi
    step "$C2A" $model $stream 2000 1 >/dev/null # warm both pools
    step "$ng" $model $stream 2000 1 >/dev/null
    declare -A over=([chat2api]=0 [nginx]=0)
    i=0
    for rate in $RATES; do
        i=$((i + 1))
        # Alternate which proxy goes first at each step.
        if ((i % 2)); then order="chat2api nginx"; else order="nginx chat2api"; fi
        for proxy in $order; do
            ((over[$proxy] < 2)) || continue # past 5 ms twice: stop stepping it up
            if [[ $proxy == chat2api ]]; then p=$C2A; else p=$ng; fi
            read -r got p50 p99 ok <<<"$(step "$p" $model $stream "$rate" "$DURATION")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$proxy" "$rate" "$got" "$p50" "$p99" "$ok" | tee -a "$RAW"
            if python3 -c "import sys; sys.exit(0 if float('$p99') > 5 else 1)"; then over[$proxy]=$((over[$proxy] + 1)); fi
        done
    done
done
python3 - "$RAW" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("\nhighest rate sustained (achieved >= 95 % of the schedule, every answer 2xx) with p99 under the bound")
for sc in sorted({r["scenario"] for r in rows}):
    for proxy in ("chat2api", "nginx"):
        ok = lambda b: [int(r["rate"]) for r in rows if r["scenario"] == sc and r["proxy"] == proxy
                        and float(r["success"]) == 1.0 and float(r["achieved_rps"]) >= 0.95 * int(r["rate"])
                        and float(r["p99_ms"]) <= b]
        print(f"{sc:6} {proxy:9} p99 <= 1 ms: {max(ok(1), default=0):>6} req/s   p99 <= 5 ms: {max(ok(5), default=0):>6} req/s")
PY
