#!/usr/bin/env bash
# The whole comparison with nginx in one command, each part a run of
# benches/e2e/e2e.sh (see its header for what it starts and measures):
#
#   1. users: nothing pinned (every process shares every core), 64
#      connections, 66-event streamed answers, model alias rewritten;
#   2. pinned: the short-answer run (servers on one cpu, wrk on the other,
#      32 connections, 5-event streams), kept beside it for history;
#   3. memory: idle RSS, open mock and proxied streams, a burst of large
#      bodies.
#
#   bash benches/e2e/run.sh            # RUNS=3 each; RUNS=1 for a quick look
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z ${CHAT2API_BIN:-} ]]; then
    cargo build --release --quiet
    export CHAT2API_BIN=${CARGO_TARGET_DIR:-target}/release/chat2api
fi
echo "### 1. users: unpinned, 64 connections, 66-event streams"
PIN=0 CONNS=64 SSE_EVENTS=64 SKIP_STREAMS=1 SKIP_PROXIED_STREAMS=1 SKIP_BURST=1 bash benches/e2e/e2e.sh
echo
echo "### 2. pinned: 32 connections, 5-event streams"
PIN=1 CONNS=32 SSE_EVENTS=3 SKIP_STREAMS=1 SKIP_PROXIED_STREAMS=1 SKIP_BURST=1 bash benches/e2e/e2e.sh
if [[ -z ${SKIP_MEMORY:-} ]]; then
    echo
    echo "### 3. memory"
    SKIP_LOAD=1 RUNS=1 bash benches/e2e/e2e.sh
fi
