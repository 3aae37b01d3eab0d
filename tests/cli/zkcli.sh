#!/usr/bin/env bash
# Drive Apache ZooKeeper's Java shell (zkCli.sh) against HOST:PORT through a
# create/get/set/ls/stat/delete script, one non-interactive invocation per command,
# and check every output with grep. Exits non-zero on the first mismatch.
# Usage: zkcli.sh HOST:PORT     (ZKCLI overrides the zkCli.sh path)
set -u
SERVER=${1:?usage: zkcli.sh HOST:PORT}
ZKCLI=${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}
NODE="/zkcli_$$_$RANDOM"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

run() { # run ARGS...: one zkCli.sh invocation; output in $OUT, exit code in $RC
    timeout 60 "$ZKCLI" -server "$SERVER" "$@" >"$OUT" 2>&1
    RC=$?
}
fail() {
    echo "FAIL: $*" >&2
    echo "---- output ----" >&2
    cat "$OUT" >&2
    exit 1
}
expect() { # expect WHAT REGEX: $OUT must contain a line matching REGEX
    grep -Eq -- "$2" "$OUT" || fail "$1: no line matching '$2'"
}
expect_rc() {
    [ "$RC" -eq "$1" ] || fail "$2: exit code $RC, expected $1"
}

run create "$NODE" hello
expect_rc 0 "create"
expect "create" "^Created $NODE\$"

run get "$NODE"
expect_rc 0 "get"
expect "get" "^hello\$"

run create "$NODE" again
expect "create existing" "Node already exists: $NODE"

run create -e "$NODE/eph" e
expect "create -e" "^Created $NODE/eph\$"

run create -s "$NODE/seq-" s
expect "create -s" "^Created $NODE/seq-0000000001\$"

run set "$NODE" world
expect_rc 0 "set"

run get -s "$NODE"
expect_rc 0 "get -s"
expect "get -s data" "^world\$"
expect "get -s version" "^dataVersion = 1\$"
# The ephemeral may outlive zkCli.sh by a session timeout: it exits without closing.
expect "get -s numChildren" "^numChildren = [12]\$"
expect "get -s cZxid" "^cZxid = 0x[0-9a-f]+\$"
expect "get -s ephemeralOwner" "^ephemeralOwner = 0x0\$"

run ls "$NODE"
expect_rc 0 "ls"
expect "ls" "^\[(eph, )?seq-0000000001(, eph)?\]\$"

run ls /
expect "ls /" "zookeeper"
expect "ls /" "${NODE#/}"

run set "$NODE" stale -v 7
expect "set bad version" "version No is not valid : $NODE"

run delete "$NODE"
expect "delete non-empty" "Node not empty: $NODE"

run deleteall "$NODE"
expect_rc 0 "deleteall"

run get "$NODE"
expect "get deleted" "Node does not exist: $NODE"
[ "$RC" -ne 0 ] || fail "get deleted: exit code 0"

run stat "$NODE"
expect "stat deleted" "Node does not exist: $NODE"

echo "zkcli.sh: all checks passed against $SERVER"
