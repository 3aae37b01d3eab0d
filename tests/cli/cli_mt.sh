#!/usr/bin/env bash
# Drive Apache ZooKeeper's C client shell (cli_mt, Debian zookeeper-bin) against HOST:PORT through
# a create/get/set/ls/delete script, one batch-mode invocation ("cmd:<command>") per command, and
# check every output with grep. cli_mt's create takes no data: the node gets the value "new".
# Exits non-zero on the first mismatch.
# Usage: cli_mt.sh HOST:PORT    (CLI_MT overrides the cli_mt path)
set -u
SERVER=${1:?usage: cli_mt.sh HOST:PORT}
CLI_MT=${CLI_MT:-/usr/lib/zookeeper/bin/cli_mt}
NODE="/climt_$$_$RANDOM"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

run() { # run COMMAND: one cli_mt batch invocation, output (minus C client log lines) in $OUT
    timeout 30 "$CLI_MT" "$SERVER" "cmd:$1" 2>&1 | grep -Ev '^[0-9]{4}-[0-9]{2}-[0-9]{2} ' >"$OUT"
    RC=${PIPESTATUS[0]}
    [ "$RC" -ne 124 ] || fail "'$1' timed out"
}
fail() {
    echo "FAIL: $*" >&2
    echo "---- output ----" >&2
    cat "$OUT" >&2
    exit 1
}
expect() { # expect WHAT REGEX
    grep -Eq -- "$2" "$OUT" || fail "$1: no line matching '$2'"
}

run "create $NODE"
expect "session" "^Got a new session id: 0x[0-9a-f]+"
expect "create" "^\[$NODE\]: rc = 0\$"
expect "create name" "name = $NODE\$"

run "get $NODE"
expect "get rc" "^$NODE: rc = 0\$"
expect "get len" "value_len = 3"
expect "get data" "^new\$"
expect "get version" "version=0"

run "create $NODE"
expect "create existing" "^\[$NODE\]: rc = -110\$"

run "create +s $NODE/s-"
expect "create sequential" "name = $NODE/s-0000000000\$"

run "create2 $NODE/c2"
expect "create2" "name = $NODE/c2\$"
expect "create2 stat" "version=0"

run "set $NODE hello"
expect "set rc" "^$NODE: rc = 0"
expect "set version" "version=1"

run "get $NODE"
expect "get after set" "^hello\$"
expect "get after set len" "value_len = 5"

run "ls $NODE"
expect "ls rc" "^$NODE: rc = 0\$"
expect "ls child s" "^[[:space:]]+s-0000000000\$"
expect "ls child c2" "^[[:space:]]+c2\$"

run "ls /"
expect "ls / zookeeper" "^[[:space:]]+zookeeper\$"
expect "ls / node" "^[[:space:]]+${NODE#/}\$"

run "delete $NODE"
expect "delete non-empty" "^$NODE: rc = -111\$"

run "delete $NODE/s-0000000000"
expect "delete child" "^$NODE/s-0000000000: rc = 0\$"
run "delete $NODE/c2"
expect "delete child" "^$NODE/c2: rc = 0\$"
run "delete $NODE"
expect "delete" "^$NODE: rc = 0\$"

run "get $NODE"
expect "get deleted" "^$NODE: rc = -101\$"

echo "cli_mt.sh: all checks passed against $SERVER"
