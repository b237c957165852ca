#!/usr/bin/env bash
# ensure-redis.sh [HOST] [PORT]: make sure a Redis answers PING on HOST:PORT
# (default 127.0.0.1:6379). If none does, start one: redis-server when installed
# (daemonized, no persistence, for tests), otherwise a docker container named
# viberq-test-redis. Exits non-zero if no Redis answers after that.
set -euo pipefail

host="${1:-127.0.0.1}"
port="${2:-6379}"

# ping_tcp speaks RESP over bash's /dev/tcp, for hosts without redis-cli. It runs in a
# subshell so the descriptor and the silenced stderr stay local.
ping_tcp() (
	exec 3<>"/dev/tcp/$host/$port" || exit 1
	printf 'PING\r\n' >&3
	IFS= read -r -t 2 reply <&3 || exit 1
	[ "${reply%$'\r'}" = "+PONG" ]
) 2>/dev/null

ping() {
	if command -v redis-cli >/dev/null 2>&1; then
		[ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null)" = "PONG" ]
	else
		ping_tcp
	fi
}

if ping; then
	echo "redis: already answering on $host:$port"
	exit 0
fi

if command -v redis-server >/dev/null 2>&1; then
	echo "redis: starting redis-server on $host:$port"
	redis-server --bind "$host" --port "$port" --daemonize yes \
		--save '' --appendonly no --dir "${TMPDIR:-/tmp}" \
		--logfile "${TMPDIR:-/tmp}/viberq-test-redis.log"
elif command -v docker >/dev/null 2>&1; then
	echo "redis: starting docker container viberq-test-redis on $host:$port"
	docker run -d --rm --name viberq-test-redis -p "$host:$port:6379" redis:7 >/dev/null
else
	echo "redis: nothing answers on $host:$port and neither redis-server nor docker is installed" >&2
	exit 1
fi

for _ in $(seq 1 50); do
	if ping; then
		echo "redis: ready on $host:$port"
		exit 0
	fi
	sleep 0.2
done
echo "redis: started but not answering on $host:$port" >&2
exit 1
