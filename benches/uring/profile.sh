#!/usr/bin/env bash
# The profile behind benches/uring/run.sh's figures: for each relay (epoll,
# io_uring) under the same wrk load (64 connections, nothing pinned, plain
# and 66-event streamed answers from an instant nginx upstream), syscalls
# and context switches per request (perf stat, a 3 s window beside a 3 s wrk
# run) and where the CPU goes (perf record -g, 3 s, grouped into syscall
# entry, epoll, io_uring, scheduler, user space and the rest of the kernel).
#
#   bash benches/uring/profile.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
(cd "$ROOT/benches/uring" && cargo build --release --quiet)
RELAY=$ROOT/benches/uring/target/release/uring-relay
WORK=$(mktemp -d /tmp/c2a-uring-prof.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
# shellcheck source=benches/e2e/upstream.sh
source "$ROOT/benches/e2e/upstream.sh"
start_upstream 64
load() { # port stream seconds -> requests
    BENCH_STREAM=$2 wrk -t1 -c64 -d"$3s" -s "$ROOT/benches/e2e/chat.lua" "http://127.0.0.1:$1" |
        sed -n 's/.*requests=\([0-9]*\).*/\1/p'
}
for sc in plain sse; do
    if [[ $sc == plain ]]; then up=$UP stream=0; else up=$UPS stream=1; fi
    for mode in epoll uring; do
        p=$(port)
        "$RELAY" "$mode" "$p" "$up" &
        PIDS+=($!)
        pid=$!
        sleep 0.3
        load "$p" $stream 1 >/dev/null
        perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" -o "$WORK/stat" -- sleep 3 &
        st=$!
        req=$(load "$p" $stream 3)
        wait $st
        perf record -F 2999 -g -o "$WORK/perf.data" -p "$pid" -- sleep 3 >/dev/null 2>&1 &
        rec=$!
        load "$p" $stream 3 >/dev/null
        wait $rec
        kill "$pid"
        perf report -i "$WORK/perf.data" --no-children --sort sym --stdio 2>/dev/null >"$WORK/report"
        python3 - "$sc" "$mode" "$req" "$WORK/stat" "$WORK/report" <<'PY'
import re, sys
sc, mode, req, stat, report = sys.argv[1:]
req = int(req)
counts = {l.split(",")[2]: float(l.split(",")[0]) for l in open(stat) if l.count(",") > 3 and l[0].isdigit()}
sys_req = counts.get("raw_syscalls:sys_enter", 0) / req
cs_req = counts.get("context-switches", 0) / req
groups = [
    ("syscall entry/exit, fd lookup", r"(entry_SYSCALL|do_syscall_64|syscall_exit|syscall_return|__x64_sys|x64_sys_call|exit_to_user_mode|fdget|fget|__fget|fput|__fdget|syscall_enter)"),
    ("epoll", r"(ep_|do_epoll|__ep|sock_poll|tcp_poll|__pollwait)"),
    ("io_uring", r"(io_|__io_|.*io_uring|tctx|llist_reverse_order)"),
    ("scheduler", r"(finish_task_switch|__schedule|schedule|pick_next|__switch_to|switch_mm|try_to_wake_up|ttwu|dequeue|enqueue)"),
]
share = {}
for line in open(report):
    m = re.match(r"\s+([\d.]+)%\s+\[(.)\]\s+(\S+)", line)
    if not m:
        continue
    pct, kind, sym = float(m[1]), m[2], m[3]
    name = "user space" if kind != "k" else next((g for g, rx in groups if re.match(rx, sym)), "kernel: TCP/IP, copies, rest")
    share[name] = share.get(name, 0) + pct
print(f"{sc:5} {mode:5} requests {req:>7}  syscalls/req {sys_req:5.2f}  ctx-switches/req {cs_req:5.3f}  "
      + "  ".join(f"{k} {v:.1f}%" for k, v in sorted(share.items(), key=lambda kv: -kv[1])))
PY
    done
done
