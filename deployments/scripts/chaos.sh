#!/usr/bin/env bash
# chaos.sh [short|full] [RUN_REGEXP]: runs the reliability (fault) scenarios of
# RELIABILITY.md against real processes — a Redis, the DecisionTelecom simulator and
# several `viberq worker` processes — and prints the table of RELIABILITY.md with the
# figures of this run: worker kill -9, Redis restart (AOF), the chaos profile, the
# balance running out, TTL expiry, garbage answers, SIGTERM mid-batch, forged or early
# status callbacks, Redis with a password and with TLS, the outbox stream, a 429 with a
# day-long Retry-After, a promotional backlog in front of OTPs, a provider outage and
# its recovery.
#
#   task chaos                       # full scale (thousands of messages, ~15 min)
#   task chaos -- short              # the CI size (a few hundred messages, ~3-4 min)
#   task chaos -- full 'TestFaultChaos$'
#
# Environment: VIBERQ_TEST_REDIS_URL (default redis://127.0.0.1:6379, started by
# ensure-redis.sh when nothing answers; the tests use its databases 1-15 through
# tasks/redistest and start their own redis-server for the restart, password and TLS
# scenarios), VIBERQ_FAULT_REPORT (the JSON lines of figures; default under the log
# directory), VIBERQ_FAULT_LOGDIR (every process's log, kept; default a new
# directory under ${TMPDIR:-/tmp}).
#
# Exit status: that of `go test` (non-zero if any scenario failed); the table is
# printed either way, failed rows marked.
set -euo pipefail
cd "$(dirname "$0")/../.."

scale="${1:-full}"
run="${2:-^(TestFault|TestSecurity|TestOutbox)}"
case "$scale" in
short | full) ;;
*)
	echo "usage: $0 [short|full] [RUN_REGEXP]" >&2
	exit 2
	;;
esac

export VIBERQ_TEST_REDIS_URL="${VIBERQ_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
hostport="${VIBERQ_TEST_REDIS_URL#*://}"
hostport="${hostport##*@}"
hostport="${hostport%%/*}"
host="${hostport%%:*}"
port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=6379
bash deployments/scripts/ensure-redis.sh "$host" "$port"

logdir="${VIBERQ_FAULT_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/viberq-chaos.XXXXXX")}"
mkdir -p "$logdir"
report="${VIBERQ_FAULT_REPORT:-$logdir/report.jsonl}"
: >"$report"
export VIBERQ_FAULT_SCALE="$scale" VIBERQ_FAULT_REPORT="$report" VIBERQ_FAULT_LOGDIR="$logdir"

echo "chaos: scale $scale, scenarios $run, logs in $logdir"
status=0
# pipefail: the pipeline fails when go test does.
go test -count=1 -timeout 90m -run "$run" -v ./worker/faulttest/ 2>&1 | tee "$logdir/go-test.log" || status=$?

echo
echo "## Reliability scenarios ($scale scale, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
if [ -s "$report" ]; then
	go run ./worker/faulttest/faultreport "$report"
else
	echo "chaos: no figures were written (every scenario skipped or failed early); see $logdir/go-test.log" >&2
	[ "$status" -ne 0 ] || status=1
fi
echo
echo "figures: $report; logs: $logdir"
exit "$status"
