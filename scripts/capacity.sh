#!/usr/bin/env bash
# One point of the end-to-end capacity curve (docs/performance.md, "Capacity and scale-out"):
# a private redis-server, `kiki gateway` and `kiki worker` (tiny.en int8 unless
# KIKI_MODEL__PRECISION says otherwise) as separate processes, and `kiki bench load` streaming SESSIONS sessions of the
# espeak clips at real time for DURATION seconds, watching all three processes.
#
#   bash scripts/capacity.sh SESSIONS [DURATION_S]       (after `make build`)
#
# Extra `kiki bench load` flags go in LOAD_ARGS (e.g. LOAD_ARGS="--json"); WORKERS=N starts N
# worker processes. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:?usage: capacity.sh SESSIONS [DURATION_S]}
duration=${2:-60}
workers=${WORKERS:-1}
kiki=${CARGO_TARGET_DIR:-target}/release/kiki
[ -x "$kiki" ] || { echo "no $kiki: run make build" >&2; exit 1; }
[ -d .cache/clips ] || bash scripts/make-clips.sh .cache/clips

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
gport=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

redis-server --port "$rport" --save "" --appendonly no >/dev/null &
pids+=($!)
redis_pid=$!
export KIKI_REDIS_URL="redis://127.0.0.1:$rport/"
export KIKI_MODEL__PRECISION=${KIKI_MODEL__PRECISION:-int8}
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done

KIKI_LISTEN="127.0.0.1:$gport" "$kiki" gateway >/tmp/kiki-capacity-gateway.log 2>&1 &
pids+=($!)
watch=(--watch "gateway=$!" --watch "redis=$redis_pid")
for i in $(seq 1 "$workers"); do
  "$kiki" worker >"/tmp/kiki-capacity-worker$i.log" 2>&1 &
  pids+=($!)
  watch+=(--watch "worker$i=$!")
done
until curl -sf "http://127.0.0.1:$gport/readyz" >/dev/null; do sleep 0.5; done

# shellcheck disable=SC2086
"$kiki" bench load --url "ws://127.0.0.1:$gport/ws" --clips .cache/clips --sessions "$sessions" \
  --duration "$duration" --ramp 10 --talk 0.3 "${watch[@]}" \
  --sample-redis "redis://127.0.0.1:$rport/" ${LOAD_ARGS:-}
