#!/bin/bash
# bench-nodes.sh — one run of `liveforum-bench chat` against one of three set-ups, for docs/benchmarks.md:
#   mem1    one node, in-memory broker
#   redis1  one node on Redis
#   redis2  two nodes on one Redis, the members split between them
# Usage: scripts/bench-nodes.sh <mem1|redis1|redis2> <rate (0: closed loop)> <n> <m> [publishers]
# Needs /tmp/lf and /tmp/lfb (go build -o /tmp/lf ./cmd/liveforum; go build -o /tmp/lfb ./cmd/liveforum-bench)
# and redis-server/redis-cli. Starts its own redis-server (no persistence) on port 16399 if none answers
# there, flushes it, and prints one JSON line: the bench's figures plus Redis's CPU during the run
# (used_cpu_sys + used_cpu_user) and the append script's calls and µs per call (INFO commandstats).
set -euo pipefail
S=$1 RATE=$2 N=$3 M=$4 PUBS=${5:-4}
SECRET=k1:benchsecretbenchsecretbenchsecret12 KEY=adminkeyadminkey1234 RP=16399 DIR=${TMPDIR:-/tmp}/lf-bench-nodes
mkdir -p "$DIR"
redis-cli -p $RP ping >/dev/null 2>&1 || { redis-server --port $RP --save '' --appendonly no --dir "$DIR" --daemonize yes >/dev/null; sleep 0.5; }
redis-cli -p $RP flushall >/dev/null
COMMON=(-secret $SECRET -admin-key $KEY -log-level warn -max-members 100000)
pids=()
node() { /tmp/lf -addr 127.0.0.1:$1 "${COMMON[@]}" "${@:2}" >"$DIR/node$1.log" 2>&1 & pids+=($!); }
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
case $S in
mem1) node 18201; URLS=ws://127.0.0.1:18201/ws ;;
redis1) node 18201 -redis-url redis://127.0.0.1:$RP/0; URLS=ws://127.0.0.1:18201/ws ;;
redis2) node 18201 -redis-url redis://127.0.0.1:$RP/0; node 18202 -redis-url redis://127.0.0.1:$RP/0
        URLS=ws://127.0.0.1:18201/ws,ws://127.0.0.1:18202/ws ;;
*) echo "unknown set-up $S" >&2; exit 2 ;;
esac
sleep 1
cpu() { redis-cli -p $RP info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.4f", s}'; }
redis-cli -p $RP config resetstat >/dev/null
C0=$(cpu)
OUT=$(/tmp/lfb chat -url $URLS -secret $SECRET -admin-key $KEY -n $N -m $M -publishers $PUBS -size 64 -rate $RATE 2>&1 | tail -1)
C1=$(cpu)
EV=$(redis-cli -p $RP info commandstats | awk -F'[:,=]' '/cmdstat_evalsha:/{print $3, $7}')
python3 - "$OUT" "$S" "$C0" "$C1" "$M" "$PUBS" "$EV" <<'PY'
import json, sys
out, s, c0, c1, m, pubs, ev = sys.argv[1:]
d = json.loads(out)
e = ev.split()
r = {"setup": s, "rate": d["rate"], "n": d["n"], "m": d["m"], "publishers": int(pubs)}
for k in ["ack_p50_ms", "ack_p99_ms", "msgs_per_sec", "p50_ms", "p99_ms", "max_ms", "lost", "dups", "out_of_order"]:
    r[k] = d[k]
r["redis_cpu_ms"] = round((float(c1) - float(c0)) * 1000, 1)
r["evalsha_calls"] = int(e[0]) if e else 0
r["evalsha_usec_per_call"] = float(e[1]) if len(e) > 1 else 0
print(json.dumps(r))
PY
