#!/usr/bin/env bash
# screenshot.sh URL OUT.png [DOM.html]: load URL (the Asynq UI at /monitoring/ of
# `viberq api`) in headless Chromium with basic auth and save a screenshot to OUT.png;
# with DOM.html, also save the rendered DOM there (for checks such as "the page lists
# the queues").
#
# Credentials come from the environment, never from the command line:
#   MONITORING_USER (default admin), MONITORING_PASSWORD (required).
# They go into the URL's userinfo, which Chromium turns into the Authorization header
# of the page and reuses for the UI's own API requests (checked with Chromium 156,
# new headless mode). Only the given host is resolved: every other host name (the UI
# links Google Fonts) resolves to nothing, so the browser talks to that host alone.
#
# Chromium: $CHROMIUM, else chromium, chromium-browser, google-chrome on PATH
# (Debian/Ubuntu: apt-get install -y chromium). Exit codes: 0 done, 3 no Chromium (a
# message says so; CI may skip), 2 bad usage, 1 the page could not be captured.
set -uo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: MONITORING_PASSWORD=... $0 URL OUT.png [DOM.html]" >&2
	exit 2
fi
url=$1 out=$2 dom=${3:-}
user=${MONITORING_USER:-admin}
pass=${MONITORING_PASSWORD:-}
[ -n "$pass" ] || { echo "screenshot: MONITORING_PASSWORD is not set" >&2; exit 2; }

browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
	for b in chromium chromium-browser google-chrome google-chrome-stable; do
		if command -v "$b" >/dev/null 2>&1; then
			browser=$b
			break
		fi
	done
fi
if [ -z "$browser" ] || ! command -v "$browser" >/dev/null 2>&1; then
	echo "screenshot: Chromium not found (set CHROMIUM or apt-get install -y chromium); skipped"
	exit 3
fi

# Split http://host:port/path and put percent-encoded credentials in.
case "$url" in
http://*) scheme=http rest=${url#http://} ;;
https://*) scheme=https rest=${url#https://} ;;
*) echo "screenshot: URL must be http(s)://host[:port]/path, got $url" >&2; exit 2 ;;
esac
hostport=${rest%%/*}
path=/${rest#*/}
[ "$rest" = "$hostport" ] && path=/
host=${hostport%:*}
enc() { # percent-encode everything but unreserved characters
	local s=$1 out="" c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case "$c" in [A-Za-z0-9._~-]) out+=$c ;; *) out+=$(printf '%%%02X' "'$c") ;; esac
	done
	printf '%s' "$out"
}
authurl="$scheme://$(enc "$user"):$(enc "$pass")@$hostport$path"

profile=$(mktemp -d "${TMPDIR:-/tmp}/viberq-chromium.XXXXXX")
trap 'rm -rf "$profile"' EXIT

# run_chromium MODE-FLAGS...: one headless run with a fresh profile, bounded to 90 s.
# The virtual time budget lets the single-page app fetch and render its data before
# the capture.
run_chromium() {
	rm -rf "$profile"/*
	timeout 90 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--disable-default-apps --disable-extensions --mute-audio --hide-scrollbars \
		--host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE $host" \
		--user-data-dir="$profile" --window-size=1400,900 --virtual-time-budget=10000 \
		"$@" "$authurl"
}

rm -f "$out"
if ! run_chromium --screenshot="$out" >"$profile.log" 2>&1 || [ ! -s "$out" ]; then
	echo "screenshot: Chromium produced no screenshot; its output:" >&2
	grep -v 'dbus\|DBus' "$profile.log" | tail -n 20 >&2
	rm -f "$profile.log"
	exit 1
fi
rm -f "$profile.log"
echo "screenshot: $url → $out ($(wc -c <"$out") bytes) with $("$browser" --version 2>/dev/null | head -n 1)"

if [ -n "$dom" ]; then
	if ! run_chromium --dump-dom >"$dom" 2>/dev/null || [ ! -s "$dom" ]; then
		echo "screenshot: Chromium could not dump the DOM" >&2
		exit 1
	fi
	echo "screenshot: rendered DOM → $dom ($(wc -c <"$dom") bytes)"
fi
