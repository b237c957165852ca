#!/usr/bin/env bash
# local.sh: viberq on your machine in one command (`task local`): a Redis, the
# DecisionTelecom simulator, one worker and the HTTP API, with generated credentials.
# It prints the URLs, the API token, the /monitoring login and a curl to try, writes
# them to .viberq/local.env (source it in another shell), and runs until Ctrl-C, then
# stops everything and removes what it started.
#
# Redis: a private redis-server on a free port when redis-server is installed (its
# data lives in a temp dir and goes away); else LOCAL_REDIS_URL, or the Redis on
# 127.0.0.1:6379 (database 0) when one answers.
#
# Environment (all optional):
#   LOCAL_API_PORT   API port on 127.0.0.1 (8080, or a free one when 8080 is taken)
#   LOCAL_SIM_PORT   simulator port (8090, or a free one)
#   LOCAL_PROFILE    simulator profile: realistic (default), instant or chaos
#   LOCAL_REDIS_URL  use this Redis instead of starting one
#   LOCAL_DIR        where local.env goes (.viberq in the repository root)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
profile=${LOCAL_PROFILE:-realistic}
outdir=${LOCAL_DIR:-$root/.viberq}
work=$(mktemp -d "${TMPDIR:-/tmp}/viberq-local.XXXXXX")
pids=()

die() { printf 'local: %s\n' "$*" >&2; exit 2; }
command -v go >/dev/null 2>&1 || die "Go is required (https://go.dev/dl/)"

cleanup() {
	local rc=$?
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
	rm -f "$outdir/local.env"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# busy PORT: something listens on 127.0.0.1:PORT.
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# pick WANT: WANT when free, else a free port.
pick() {
	local p=$1
	if ! busy "$p"; then echo "$p"; return; fi
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		busy "$p" || { echo "$p"; return; }
	done
	die "no free port found"
}
rand() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
# wait_http URL NAME PID: until URL answers 200, while PID lives (30 s).
wait_http() {
	for _ in $(seq 1 300); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = 200 ]; then return 0; fi
		kill -0 "$3" 2>/dev/null || die "$2 exited; its log: $work/$2.log"$'\n'"$(tail -5 "$work/$2.log")"
		sleep 0.1
	done
	die "$2 did not become ready at $1; its log: $(tail -5 "$work/$2.log")"
}

echo "local: building viberq ..."
go build -o "$work/viberq" ./cmd/viberq
bin=$work/viberq

# --- Redis -------------------------------------------------------------------------
if [ -n "${LOCAL_REDIS_URL:-}" ]; then
	redis_url=$LOCAL_REDIS_URL
elif command -v redis-server >/dev/null 2>&1; then
	rport=$(pick 16379)
	redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no --dir "$work" \
		--logfile "$work/redis.log" &
	pids+=($!)
	redis_url="redis://127.0.0.1:$rport/0"
	for _ in $(seq 1 50); do busy "$rport" && break; sleep 0.1; done
elif busy 6379; then
	redis_url="redis://127.0.0.1:6379/0"
	echo "local: using the Redis on 127.0.0.1:6379, database 0"
else
	die "no Redis: install redis-server, or run one (docker run -d -p 127.0.0.1:6379:6379 redis:7), or set LOCAL_REDIS_URL"
fi

# --- credentials, ports ------------------------------------------------------------
api_port=$(pick "${LOCAL_API_PORT:-8080}")
sim_port=$(pick "${LOCAL_SIM_PORT:-8090}")
metrics_port=$(pick 9090)
token=$(rand)
mon_pass=$(rand)
dt_key=$(rand)

# Only settings viberq reads are exported to it (any other VIBERQ_* is warned about).
export VIBERQ_REDIS_URL=$redis_url
export VIBERQ_DT_BASE_URL="http://127.0.0.1:$sim_port/v1/api" VIBERQ_DT_API_KEY=$dt_key
export VIBERQ_API_TOKENS=$token VIBERQ_MONITORING_USER=admin VIBERQ_MONITORING_PASSWORD=$mon_pass
export VIBERQ_HTTP_ADDR="127.0.0.1:$api_port" VIBERQ_METRICS_ADDR="127.0.0.1:$metrics_port"
export VIBERQ_LOG_FORMAT=console

"$bin" sim --addr "127.0.0.1:$sim_port" --profile "$profile" --key "$dt_key" >"$work/sim.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$sim_port/_sim/stats" sim "${pids[-1]}"
"$bin" worker >"$work/worker.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$metrics_port/readyz" worker "${pids[-1]}"
"$bin" api >"$work/api.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$api_port/readyz" api "${pids[-1]}"

mkdir -p "$outdir"
umask 077
cat >"$outdir/local.env" <<ENV
# Written by deployments/scripts/local.sh; removed when it stops.
export VQ_API=http://127.0.0.1:$api_port
export VQ_TOKEN=$token
export VIBERQ_REDIS_URL=$redis_url
ENV

cat <<BANNER

viberq is running locally (simulator profile: $profile). Ctrl-C stops everything.

  API          http://127.0.0.1:$api_port          bearer token: $token
  /monitoring  http://127.0.0.1:$api_port/monitoring/   user admin, password $mon_pass
  simulator    http://127.0.0.1:$sim_port/_sim/stats
  metrics      http://127.0.0.1:$api_port/metrics (API), http://127.0.0.1:$metrics_port/metrics (worker)
  logs         $work/{sim,worker,api}.log

Try it from another shell in $root:

  source .viberq/local.env
  curl -sS -X POST "\$VQ_API/v1/messages" -H "Authorization: Bearer \$VQ_TOKEN" \\
    -H 'Content-Type: application/json' -H 'Idempotency-Key: hello-1' \\
    -d '{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,"text":"Hello from viberq","text_sms":"Hello"}'
  curl -sS "\$VQ_API/v1/messages/hello-1" -H "Authorization: Bearer \$VQ_TOKEN"

BANNER
echo "local: ready"

# Run until a signal, or until one of the processes dies.
while :; do
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || die "a process stopped (pid $pid); logs in $work"
	done
	sleep 1
done
