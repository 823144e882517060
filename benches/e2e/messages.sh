#!/usr/bin/env bash
# The Anthropic Messages translation's cost, in one run: the same streamed
# answer (SSE_EVENTS content events from the instant upstream of
# upstream.sh, model alias rewritten) asked for as a chat stream and as a
# Messages stream (translated onto chat and back, event by event), through
# the same chat2api, nothing pinned, alternating RUNS times. Prints req/s
# and CPU per request (utime+stime of chat2api from /proc) for each, and
# their ratio. Needs nginx and wrk.
#
#   bash benches/e2e/messages.sh      # RUNS=3 CONNS=64 DURATION=6 SSE_EVENTS=64
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
DURATION=${DURATION:-6}
SSE_EVENTS=${SSE_EVENTS:-64}
BIN=${CHAT2API_BIN:-$ROOT/target/release/chat2api}
KEY=sk-bench-5f3c9a1e7d2b4c68
CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/c2a-messages.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
# shellcheck source=benches/e2e/upstream.sh
source "$ROOT/benches/e2e/upstream.sh"
start_upstream "$SSE_EVENTS"
C2A=$(port)
BENCH_UPSTREAM_PORT=$UP BENCH_UPSTREAM_SSE_PORT=$UPS BENCH_SLOW_TEXT=x \
    "$BIN" --config "$ROOT/benches/e2e/chat2api-bench.json" --port "$C2A" 2>/dev/null & PIDS+=($!)
C2A_PID=$!
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$C2A_PID/stat"; }
run() { # api -> "req/s cpu_us_per_req"
    local before after req
    BENCH_KEY=$KEY BENCH_MODEL=DeepSeek-V3.2-stream BENCH_STREAM=1 BENCH_API=$1 \
        wrk -t1 -c"$CONNS" -d1s --timeout 5s -s "$ROOT/benches/e2e/chat.lua" "http://127.0.0.1:$C2A" >/dev/null
    before=$(cpu_ticks)
    req=$(BENCH_KEY=$KEY BENCH_MODEL=DeepSeek-V3.2-stream BENCH_STREAM=1 BENCH_API=$1 \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$ROOT/benches/e2e/chat.lua" "http://127.0.0.1:$C2A" |
        sed -n 's/.*WRK_RESULT requests=\([0-9]*\).*/\1/p')
    after=$(cpu_ticks)
    python3 -c "r=$req; d=$DURATION; t=($after-$before)/$CLK_TCK; print(f'{r/d:.0f} {t/r*1e6:.1f}')"
}

echo "streamed, c$CONNS, $SSE_EVENTS content events: req/s and chat2api CPU µs per request"
for i in $(seq 1 "$RUNS"); do
    read -r chat_rps chat_cpu < <(run chat)
    read -r msg_rps msg_cpu < <(run messages)
    python3 -c "print(f'run $i: chat {$chat_rps} req/s {$chat_cpu} µs | messages {$msg_rps} req/s {$msg_cpu} µs | messages/chat: req/s {$msg_rps/$chat_rps:.2f}, CPU {$msg_cpu/$chat_cpu:.2f}')"
done
