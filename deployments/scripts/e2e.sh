#!/usr/bin/env bash
# e2e.sh: the operations story of the README, executable. Against the real Redis on 127.0.0.1 it
# builds viberq and runs `viberq sim` (realistic profile), two `viberq worker` and
# `viberq api` (with status callbacks from the simulator to the api), then checks:
#
#   1. a curl POST /v1/messages is delivered and its GET shows the final state;
#   2. a message XADDed with redis-cli to viberq:outbox is delivered;
#   3. the simulator's status callbacks update the records and end polling: every
#      record is final with polls == 0 long before the first poll was due, the
#      simulator answered no receive-viber call, and when the first polls come due
#      they end without calling the provider;
#   4. the workers' /metrics show viberq_* metrics with non-zero counts;
#   5. /monitoring answers 401 without credentials and 200 with them;
#   6. headless Chromium loads /monitoring and lists the queues critical, default and
#      status (screenshot.sh; skipped, with a message, when Chromium is absent);
#   7. SIGTERM stops every process cleanly (exit 0).
#
# It prints PASS/FAIL per check and exits 1 when any check failed (2 when it could
# not run). Everything listens on 127.0.0.1 only; every wait is bounded; the
# processes, the temp dir and the Redis database are cleaned up on exit.
#
# Redis database: one of VIBERQ_TEST_REDIS_DBS (default 1-15) reserved with the lock
# key tasks/redistest uses, kept inside that database (so it never collides with a
# concurrent integration test or bench), E2E_DB (default 12) first when in the range;
# it is flushed before and after, keeping the lock. No other database is touched.
#
# Environment:
#   E2E_REDIS_PORT                 Redis port on 127.0.0.1 (6379)
#   E2E_DB                         preferred database (12)
#   VIBERQ_TEST_REDIS_DBS          the databases it may use: 7 or 1-15 (default)
#   E2E_POLL_FIRST_WITH_CALLBACK   VIBERQ_POLL_FIRST_WITH_CALLBACK for the workers
#                                  (25s: far above the 1-11 s the simulator's callbacks
#                                  take, short enough to watch the first polls end)
#   E2E_SCREENSHOT                 where the /monitoring screenshot goes
#                                  (/tmp/viberq-e2e-monitoring.png)
#   E2E_KEEP_LOGS=1                keep the temp dir with the process logs
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

redis_port=${E2E_REDIS_PORT:-6379}
pref_db=${E2E_DB:-12}
poll_first_cb=${E2E_POLL_FIRST_WITH_CALLBACK:-25s}
shot=${E2E_SCREENSHOT:-/tmp/viberq-e2e-monitoring.png}

fails=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }
skip() { printf 'SKIP  %s\n' "$*"; }
info() { printf '      %s\n' "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 2; }

for tool in go curl jq redis-cli; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
[ "$(rcli ping 2>/dev/null)" = "PONG" ] || die "no Redis answers on 127.0.0.1:$redis_port (deployments/scripts/ensure-redis.sh starts one)"

work=$(mktemp -d "${TMPDIR:-/tmp}/viberq-e2e.XXXXXX")
pids=()
db=""
lock_token="e2e-$$-$RANDOM$RANDOM"
lock_key=""

cleanup() {
	local rc=$?
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 1 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	done
	if [ -n "$db" ]; then
		# Flush and release, only if the lock is still ours.
		rcli -n "$db" eval "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('FLUSHDB') end return 0" \
			1 "$lock_key" "$lock_token" >/dev/null 2>&1
	fi
	if [ "${E2E_KEEP_LOGS:-}" = 1 ]; then
		echo "e2e: logs kept in $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- a free Redis database, locked like tasks/redistest does --------------------------
dbs="${VIBERQ_TEST_REDIS_DBS:-1-15}"
db_first=${dbs%-*}
db_last=${dbs#*-}
[[ "$db_first" =~ ^[0-9]+$ && "$db_last" =~ ^[0-9]+$ && "$db_first" -le "$db_last" && "$db_last" -le 15 ]] ||
	die "VIBERQ_TEST_REDIS_DBS=$dbs: want a database number like 7 or a range like 1-15"
for _ in $(seq 1 60); do
	for cand in "$pref_db" $(seq "$db_first" "$db_last"); do
		[ "$cand" -ge "$db_first" ] && [ "$cand" -le "$db_last" ] || continue
		key="viberq:redistest:db:$cand"
		if [ "$(rcli -n "$cand" set "$key" "$lock_token" NX EX 900)" = "OK" ]; then
			db=$cand
			lock_key=$key
			break 2
		fi
	done
	sleep 2 # every database is in use by a test or a bench: wait for one
done
[ -n "$db" ] || die "no free Redis database among $dbs (all locked by tests)"
# FLUSHDB keeping our lock, in one MULTI.
printf 'MULTI\nFLUSHDB\nSET %s %s EX 900\nEXEC\n' "$lock_key" "$lock_token" | rcli -n "$db" >/dev/null ||
	die "cannot flush database $db"
echo "e2e: Redis 127.0.0.1:$redis_port database $db, work dir $work"

# --- free ports on 127.0.0.1 -----------------------------------------------------------
# free_port sets port to a port nobody listens on (and not handed out before).
used_ports=" "
port=""
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		case "$used_ports" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports="$used_ports$p "
			port=$p
			return 0
		fi
	done
	die "no free port found"
}
free_port && sim_port=$port
free_port && api_port=$port
free_port && m1_port=$port
free_port && m2_port=$port

# --- build --------------------------------------------------------------------------------
bin="$work/viberq"
(cd "$root" && go build -o "$bin" ./cmd/viberq) || die "go build failed"

# --- settings shared by every process ---------------------------------------------------
api_token="e2e-token-$(printf '%04x%04x%04x%04x' $RANDOM $RANDOM $RANDOM $RANDOM)"
cb_token="cb$(printf '%04x%04x%04x%04x' $RANDOM $RANDOM $RANDOM $RANDOM)"
mon_user=admin
mon_pass="mon-$(printf '%04x%04x%04x%04x' $RANDOM $RANDOM $RANDOM $RANDOM)"
export VIBERQ_REDIS_URL="redis://127.0.0.1:$redis_port/$db"
export VIBERQ_DT_API_KEY="e2e-dt-key-$RANDOM"
export VIBERQ_DT_BASE_URL="http://127.0.0.1:$sim_port/v1/api"
export VIBERQ_CALLBACK_URL="http://127.0.0.1:$api_port/callbacks/status"
export VIBERQ_CALLBACK_TOKEN="$cb_token"
export VIBERQ_POLL_FIRST_WITH_CALLBACK="$poll_first_cb"
export VIBERQ_LOG_FORMAT=json VIBERQ_LOG_LEVEL=info
export VIBERQ_SHUTDOWN_TIMEOUT=5s
export VIBERQ_API_TOKENS="$api_token"
export VIBERQ_MONITORING_USER="$mon_user" VIBERQ_MONITORING_PASSWORD="$mon_pass"
export VIBERQ_HTTP_ADDR="127.0.0.1:$api_port"
unset VIBERQ_REDIS_PASSWORD VIBERQ_REDIS_SENTINEL_ADDRS VIBERQ_ALERT_WEBHOOK_URL VIBERQ_CALLBACK_USER VIBERQ_CALLBACK_PASSWORD

declare -A pid_of
start() { # name, then the command
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	pids+=("$!")
	pid_of[$name]=$!
}

# wait_for SECONDS CMD...: run CMD every 0.2 s until it succeeds; false on timeout.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

show_log() {
	echo "---- $1.log (last 20 lines)"
	tail -n 20 "$work/$1.log"
	echo "----"
}

start sim "$bin" sim --addr "127.0.0.1:$sim_port" --profile realistic --seed 4
start worker1 env VIBERQ_METRICS_ADDR="127.0.0.1:$m1_port" "$bin" worker
start worker2 env VIBERQ_METRICS_ADDR="127.0.0.1:$m2_port" "$bin" worker
start api "$bin" api

wait_for 20 curl -sf "http://127.0.0.1:$sim_port/_sim/stats" || { show_log sim; die "the simulator did not start"; }
for n in 1 2; do
	p=$([ $n = 1 ] && echo "$m1_port" || echo "$m2_port")
	wait_for 20 curl -sf "http://127.0.0.1:$p/readyz" || { show_log "worker$n"; die "worker$n did not become ready"; }
done
wait_for 20 curl -sf "http://127.0.0.1:$api_port/readyz" || { show_log api; die "the api did not become ready"; }
echo "e2e: sim :$sim_port, workers :$m1_port :$m2_port (metrics), api :$api_port — all ready"

api="http://127.0.0.1:$api_port"
auth=(-H "Authorization: Bearer $api_token")

get_record() { curl -sS "${auth[@]}" "$api/v1/messages/$1"; }
state_of() { get_record "$1" | jq -r '.state // empty'; }
is_final() {
	case "$(state_of "$1")" in delivered | undelivered | expired | rejected | dropped | unknown) return 0 ;; esac
	return 1
}

# --- 1. curl POST → delivered, GET shows it ------------------------------------------------
t0=$SECONDS
code=$(curl -sS -o "$work/post.json" -w '%{http_code}' -X POST "$api/v1/messages" "${auth[@]}" \
	-H 'Content-Type: application/json' -H 'Idempotency-Key: e2e-http-1' \
	-d '{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,
	     "text":"e2e: your code is 1234","text_sms":"e2e code 1234","ttl":"90s"}')
info "POST /v1/messages → $code $(cat "$work/post.json")"
http_id=$(jq -r '.id // empty' "$work/post.json")
if [ "$code" = 202 ] && [ "$http_id" = e2e-http-1 ]; then
	if wait_for 40 is_final "$http_id"; then
		rec=$(get_record "$http_id")
		info "GET /v1/messages/$http_id → $rec"
		if [ "$(jq -r .state <<<"$rec")" = delivered ]; then
			pass "curl POST /v1/messages delivered in $((SECONDS - t0))s; GET shows state delivered, channel $(jq -r .channel <<<"$rec")"
		else
			fail "curl POST /v1/messages: final state $(jq -r .state <<<"$rec"), not delivered"
		fi
	else
		fail "curl POST /v1/messages: not final within 40s (state $(state_of "$http_id"))"
	fi
else
	fail "curl POST /v1/messages: HTTP $code"
fi

# --- 2. redis-cli XADD viberq:outbox → delivered ------------------------------------------
t0=$SECONDS
entry=$(rcli -n "$db" XADD viberq:outbox '*' message \
	'{"id":"e2e-outbox-1","source_addr":"Shop","destination_addr":"380671112233","message_type":106,"source_type":2,"text":"e2e: outbox message","text_sms":"e2e outbox","ttl":"90s"}')
info "redis-cli XADD viberq:outbox → $entry"
if wait_for 40 is_final e2e-outbox-1; then
	rec=$(get_record e2e-outbox-1)
	info "record: $rec"
	if [ "$(jq -r .state <<<"$rec")" = delivered ]; then
		pass "redis-cli XADD viberq:outbox delivered in $((SECONDS - t0))s (channel $(jq -r .channel <<<"$rec"))"
	else
		fail "outbox message: final state $(jq -r .state <<<"$rec"), not delivered"
	fi
else
	fail "outbox message: not final within 40s (state $(state_of e2e-outbox-1)); rejected: $(rcli -n "$db" XRANGE viberq:outbox:rejected - +)"
fi
pending_outbox=$(rcli -n "$db" XLEN viberq:outbox)
[ "$pending_outbox" = 0 ] && pass "the outbox entry was acknowledged and removed (XLEN viberq:outbox = 0)" ||
	fail "viberq:outbox still holds $pending_outbox entries"

# A few more messages so that both workers have work (for the metrics check).
more_ids=()
for i in 1 2 3 4 5 6; do
	curl -sS -o /dev/null -X POST "$api/v1/messages" "${auth[@]}" -H 'Content-Type: application/json' \
		-d "{\"id\":\"e2e-more-$i\",\"source_addr\":\"Shop\",\"destination_addr\":\"38050100000$i\",\"message_type\":106,\"source_type\":1,\"text\":\"e2e promo $i\"}"
	more_ids+=("e2e-more-$i")
done

# --- 3. status callbacks update the records and end polling --------------------------------
all_ids=("$http_id" e2e-outbox-1 "${more_ids[@]}")
all_final() {
	local id
	for id in "${all_ids[@]}"; do is_final "$id" || return 1; done
}
wait_for 40 all_final || fail "not every message final within 40s"
cb_ok=1
for id in "${all_ids[@]}"; do
	rec=$(get_record "$id")
	acc=$(jq -r .accepted_at <<<"$rec")
	fin=$(jq -r .final_at <<<"$rec")
	info "$id: state $(jq -r .state <<<"$rec") channel $(jq -r .channel <<<"$rec") polls $(jq -r .polls <<<"$rec") accepted_at $acc final_at $fin"
	if [ "$(jq -r .polls <<<"$rec")" != 0 ]; then cb_ok=0; fi
	case "$(jq -r .state <<<"$rec")" in delivered | undelivered) ;; *) cb_ok=0 ;; esac
done
stats=$(curl -sS "http://127.0.0.1:$sim_port/_sim/stats")
status_calls=$(jq -r '.status_calls // 0' <<<"$stats")
cb_sent=$(jq -r '.callbacks.sent // 0' <<<"$stats")
applied=$(curl -sS "$api/metrics" | awk '/^viberq_callbacks_total\{/ && /kind="status"/ && /result="applied"/ {s += $NF} END {print s + 0}')
info "simulator: callbacks $(jq -c .callbacks <<<"$stats"), receive-viber calls $status_calls"
info "api: viberq_callbacks_total{kind=\"status\",result=\"applied\"} = $applied"
echo "      viberq:events of $http_id:"
rcli -n "$db" --raw XRANGE viberq:events - + | awk -v id="$http_id" '
	/^[0-9]+-[0-9]+$/ { if (line != "" && match_id) print "        " line; line = ""; match_id = 0; k = ""; next }
	k == "" { k = $0; next }
	{ if (k == "id" && $0 == id) match_id = 1; line = line k "=" $0 " "; k = "" }
	END { if (line != "" && match_id) print "        " line }'
events_ok=$(rcli -n "$db" --raw XRANGE viberq:events - + | grep -c -x "$http_id")
if [ "$cb_ok" = 1 ] && [ "$status_calls" = 0 ] && [ "$applied" -ge "${#all_ids[@]}" ] && [ "$events_ok" -ge 4 ]; then
	pass "status callbacks made all ${#all_ids[@]} records final with polls == 0 and no receive-viber call (first poll due after $poll_first_cb); $applied callbacks applied; $events_ok events for $http_id"
else
	fail "status callbacks: records polled or not final (ok=$cb_ok), receive-viber calls $status_calls, applied $applied of ${#all_ids[@]}, events $events_ok"
fi

# Every callback found its record by the ?id= the worker put in callback_url (none
# was an unknown message), and the api takes the token on either side of "status".
unknown=$(curl -sS "$api/metrics" | awk '/^viberq_callbacks_total\{/ && /kind="status"/ && /result="unknown_message"/ {s += $NF} END {print s + 0}')
pid_http=$(get_record "$http_id" | jq -r .provider_message_id)
cb_body="{\"message_id\":$pid_http,\"status\":1}"
r1=$(curl -sS -w ' %{http_code}' -H 'Content-Type: application/json' -d "$cb_body" "$api/callbacks/status/$cb_token?id=$http_id" | tr -d '\n')
r2=$(curl -sS -w ' %{http_code}' -H 'Content-Type: application/json' -d "$cb_body" "$api/callbacks/$cb_token/status?id=$http_id" | tr -d '\n')
r3=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$cb_body" "$api/callbacks/status/wrong-token-0123456789?id=$http_id")
info "callback routes: /callbacks/status/<token> → $r1; /callbacks/<token>/status → $r2; wrong token → $r3"
if [ "$unknown" = 0 ] && [ "${r1##* }" = 200 ] && [ "${r2##* }" = 200 ] && [ "$r3" = 404 ] &&
	[ "$(jq -r .result <<<"${r1% *}")" = final ] && [ "$(jq -r .result <<<"${r2% *}")" = final ]; then
	pass "callback_url (VIBERQ_CALLBACK_URL + /<token> + ?id=<message id>) reaches the api: no unknown-message callbacks; both token layouts answer 200, a wrong token 404"
else
	fail "callback routes: unknown-message callbacks $unknown; answers $r1 / $r2 / $r3"
fi

# When the first polls come due they must end without calling the provider.
status_queue_idle() {
	"$bin" queues --json | jq -e '.[] | select(.queue == "status") | (.scheduled + .pending + .active + .retry) == 0' >/dev/null
}
info "waiting for the scheduled first polls (VIBERQ_POLL_FIRST_WITH_CALLBACK=$poll_first_cb) to come due…"
"$bin" queues | sed 's/^/      /'
if wait_for 90 status_queue_idle; then
	status_calls2=$(curl -sS "http://127.0.0.1:$sim_port/_sim/stats" | jq -r '.status_calls // 0')
	polls_total=0
	for id in "${all_ids[@]}"; do polls_total=$((polls_total + $(get_record "$id" | jq -r .polls))); done
	"$bin" queues | sed 's/^/      /'
	if [ "$status_calls2" = 0 ] && [ "$polls_total" = 0 ]; then
		pass "polling stopped: every poll task ran and ended without calling the provider (receive-viber calls 0, polls 0)"
	else
		fail "polling did not stop: receive-viber calls $status_calls2, polls $polls_total"
	fi
else
	fail "the status queue did not drain within 90s"
	"$bin" queues | sed 's/^/      /'
fi
info "viberq status $http_id:"
"$bin" status "$http_id" | sed 's/^/        /'

# --- 4. the workers' /metrics ------------------------------------------------------------
metric_sum() { # port, metric name (counter, or histogram _count)
	curl -sS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $NF} END {print s + 0}'
}
sends=0 prov=0 waits=0
for p in "$m1_port" "$m2_port"; do
	s=$(metric_sum "$p" viberq_sends_total)
	d=$(metric_sum "$p" viberq_provider_request_duration_seconds_count)
	w=$(metric_sum "$p" viberq_limiter_wait_seconds_count)
	fam=$(curl -sS "http://127.0.0.1:$p/metrics" | grep -oE '^viberq_[a-z_]+' | sed -E 's/_(bucket|sum|count)$//' | sort -u | tr '\n' ' ')
	q=$(curl -sS "http://127.0.0.1:$p/metrics" | grep -c '^asynq_')
	info "worker :$p: viberq_sends_total $s, provider requests $d, limiter waits $w, asynq_* series $q; families: $fam"
	sends=$((sends + s)) prov=$((prov + d)) waits=$((waits + w))
done
if [ "$sends" -ge "${#all_ids[@]}" ] && [ "$prov" -ge "${#all_ids[@]}" ] && [ "$waits" -gt 0 ]; then
	pass "workers' /metrics: viberq_sends_total $sends, viberq_provider_request_duration_seconds_count $prov, viberq_limiter_wait_seconds_count $waits"
else
	fail "workers' /metrics: viberq_sends_total $sends, provider requests $prov, limiter waits $waits (want ≥ ${#all_ids[@]}, ≥ ${#all_ids[@]}, > 0)"
fi

# --- 5. /monitoring needs credentials -------------------------------------------------------
c1=$(curl -sS -o /dev/null -w '%{http_code}' "$api/monitoring/")
c2=$(curl -sS -o /dev/null -w '%{http_code}' -u "$mon_user:wrong-password" "$api/monitoring/")
c3=$(curl -sS -o "$work/mon.html" -w '%{http_code}' -u "$mon_user:$mon_pass" "$api/monitoring/")
c4=$(curl -sS -o "$work/queues.json" -w '%{http_code}' -u "$mon_user:$mon_pass" "$api/monitoring/api/queues")
info "/monitoring/: no credentials $c1, wrong password $c2, right ones $c3; /monitoring/api/queues $c4: $(jq -c '[.queues[]? | {queue, size, paused}]' "$work/queues.json" 2>/dev/null)"
if [ "$c1" = 401 ] && [ "$c2" = 401 ] && [ "$c3" = 200 ] && [ "$c4" = 200 ]; then
	pass "/monitoring refuses requests without credentials (401) and serves them with (200)"
else
	fail "/monitoring: without credentials $c1, wrong $c2, with $c3 / $c4 (want 401, 401, 200, 200)"
fi

# --- 6. headless Chromium lists the queues ------------------------------------------------
MONITORING_USER="$mon_user" MONITORING_PASSWORD="$mon_pass" \
	"$here/screenshot.sh" "$api/monitoring/" "$shot" "$work/monitoring.dom.html" >"$work/screenshot.log" 2>&1
rc=$?
sed 's/^/      /' "$work/screenshot.log"
case $rc in
0)
	missing=""
	for q in critical default status; do
		# a row of the queue table links to the queue's page
		grep -q "href=\"/monitoring/queues/$q\">$q</a>" "$work/monitoring.dom.html" || missing="$missing $q"
	done
	if [ -z "$missing" ]; then
		pass "headless Chromium loaded /monitoring with credentials; its queue table lists critical, default, status (screenshot $shot)"
	else
		fail "headless Chromium: /monitoring does not list:$missing (screenshot $shot)"
	fi
	;;
3) skip "headless Chromium: not installed (apt-get install -y chromium); screenshot skipped" ;;
*) fail "headless Chromium: screenshot.sh exited $rc" ;;
esac

# --- 7. graceful shutdown ------------------------------------------------------------------
for name in api worker1 worker2 sim; do
	kill -TERM "${pid_of[$name]}" 2>/dev/null
done
for name in api worker1 worker2 sim; do
	pid=${pid_of[$name]}
	for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		fail "$name did not stop within 15s of SIGTERM"
		continue
	fi
	wait "$pid"
	rc=$?
	if [ "$rc" = 0 ]; then
		pass "$name stopped on SIGTERM with exit 0"
	else
		fail "$name exited $rc on SIGTERM"
		show_log "$name"
	fi
done
pids=()

if grep -h '"level":"\(error\|fatal\|panic\)"' "$work"/worker*.log "$work"/api.log >/dev/null 2>&1; then
	fail "error lines in the logs:"
	grep -h '"level":"\(error\|fatal\|panic\)"' "$work"/worker*.log "$work"/api.log | head -n 10 | sed 's/^/      /'
else
	pass "no error lines in the worker and api logs"
fi
if grep -q "$VIBERQ_DT_API_KEY\|$cb_token\|$api_token\|$mon_pass" "$work"/*.log; then
	fail "a secret appears in the logs"
else
	pass "no secret (API key, callback token, bearer token, monitoring password) in the logs"
fi

echo
if [ "$fails" -gt 0 ]; then
	echo "e2e: $fails check(s) FAILED"
	[ "${E2E_KEEP_LOGS:-}" = 1 ] || echo "e2e: rerun with E2E_KEEP_LOGS=1 to keep the logs"
	exit 1
fi
echo "e2e: all checks passed"
