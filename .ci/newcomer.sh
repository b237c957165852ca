#!/usr/bin/env bash
# The newcomer's path of README "Quick start", executed: from a clean clone of this
# repository, the one-command local stack (deployments/scripts/local.sh) starts, and
# the curl between the README's newcomer markers delivers a message through the
# simulator. Budget: under a minute (the build cache of the earlier CI steps helps).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/viberq-newcomer.XXXXXX")
pid=""
cleanup() {
	local rc=$?
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	[ "$rc" -eq 0 ] || { echo "--- local.sh output"; cat "$tmp/local.out" 2>/dev/null || true; }
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
fail() { echo "newcomer: FAIL: $*" >&2; exit 1; }

git clone -q "$src" "$tmp/viberq"
# The committed tree only: a working copy's uncommitted edits are not part of it.
cd "$tmp/viberq"

# The instant profile delivers every message: the check must not depend on the
# realistic profile's share of failures.
LOCAL_PROFILE=instant bash deployments/scripts/local.sh >"$tmp/local.out" 2>&1 &
pid=$!
for _ in $(seq 1 900); do
	grep -q '^local: ready' "$tmp/local.out" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || fail "local.sh exited before it was ready"
	sleep 0.1
done
grep -q '^local: ready' "$tmp/local.out" || fail "local.sh not ready after 90 s"

# The README's curl, verbatim.
snippet=$(awk '/<!-- newcomer:begin -->/{on=1;next} /<!-- newcomer:end -->/{on=0} on' README.md | sed -n '/^```sh$/,/^```$/p' | sed '1d;$d')
[ -n "$snippet" ] || fail "README.md has no newcomer snippet"
out=$(bash -c "set -e; $snippet")
echo "$out"
echo "$out" | grep -q '"id":"hello-1"' || fail "the README's curl did not enqueue hello-1"

# Delivered through the simulator, as the README's last curl shows.
source .viberq/local.env
state=""
for _ in $(seq 1 300); do
	state=$(curl -sS "$VQ_API/v1/messages/hello-1" -H "Authorization: Bearer $VQ_TOKEN" | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p')
	[ "$state" = delivered ] && break
	sleep 0.1
done
[ "$state" = delivered ] || fail "hello-1 is $state, not delivered, after 30 s"
echo "newcomer: hello-1 delivered"
