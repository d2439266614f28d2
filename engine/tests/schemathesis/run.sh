#!/usr/bin/env bash
# Fuzzes the HTTP API from outside: starts a real `ferrojob-server --ephemeral` on 127.0.0.1
# with a known admin token, creates an app `fuzz` with a job, a run, a workflow and a workflow
# run (so that id 1 of each exists), then runs schemathesis against the OpenAPI document the
# server itself serves at /v1/openapi.json. Checks: no 5xx, and every answer's status, content
# type and body as documented. Phases: examples, coverage, fuzzing and stateful (links
# inferred by schemathesis), at most SCHEMATHESIS_EXAMPLES cases per operation (default 40)
# from a fixed seed (SCHEMATHESIS_SEED), so a run takes about a minute and repeats. The script
# also fails if the server logged a panic.
#
# Needs python3 with pip (schemathesis is installed from PyPI when missing) and curl; builds
# ferrojob-server (debug) unless FERROJOB_SERVER names a binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"

examples="${SCHEMATHESIS_EXAMPLES:-40}"
seed="${SCHEMATHESIS_SEED:-7}"
version="4.32.5"

# Through the interpreter rather than the `st` script, which pip may put outside PATH.
installed="$(python3 -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null || true)"
if [ "$installed" != "$version" ]; then
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$version"
fi
# CPython 3.11 before 3.11.8 can raise `SystemError: AST constructor recursion depth mismatch`
# from `ast.parse` deep in a call stack; hypothesis parses a lambda's source only to name the
# lambda in a strategy's repr, and schemathesis reports the SystemError as a runtime error of
# the run. The wrapper names such a lambda plainly instead; nothing the fuzzer sends changes.
st() {
    python3 -c '
import sys
from schemathesis.cli import schemathesis
import hypothesis.internal.reflection as reflection
describe = reflection.get_pretty_function_description
def plain_description(f):
    try:
        return describe(f)
    except SystemError:
        return getattr(f, "__name__", "<function>")
for module in list(sys.modules.values()):
    if getattr(module, "get_pretty_function_description", None) is describe:
        module.get_pretty_function_description = plain_description
sys.argv[0] = "st"
sys.exit(schemathesis())
' "$@"
}

server="${FERROJOB_SERVER:-}"
if [ -z "$server" ]; then
    cargo build -p ferrojob-bin --bin ferrojob-server --locked --quiet
    server="${CARGO_TARGET_DIR:-$root/target}/debug/ferrojob-server"
fi

work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

token="schemathesis-admin-$RANDOM$RANDOM"
# The fuzzer sends many refused tokens from one address: the failed sign-in limit would then
# answer 429 on routes that document no 429.
"$server" --ephemeral --data-dir "$work/data" --http 127.0.0.1:0 --listen 127.0.0.1:0 \
    --admin-token "$token" --failed-logins-per-min 0 >"$work/server.log" 2>&1 &
pid=$!

# The server prints `ferrojob-server ready http=ADDR transport=ADDR` once it listens.
addr=""
for _ in $(seq 1 300); do
    addr="$(sed -n 's/.*ferrojob-server ready http=\([^ ]*\).*/\1/p' "$work/server.log" | head -n1)"
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "schemathesis: ferrojob-server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
base="http://$addr"

call() { # METHOD PATH [JSON]
    curl -sS --fail-with-body -X "$1" "$base$2" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' ${3:+--data "$3"}
    echo
}
call POST /v1/apps '{"name":"fuzz","secret":"fuzz-secret-0123456789"}'
call POST /v1/apps/fuzz/jobs '{"name":"api job","time_expression_type":"API","processor":"noop"}'
call POST /v1/apps/fuzz/jobs/1/run '{}'
call POST /v1/apps/fuzz/workflows \
    '{"name":"one node","time_expression_type":"API","nodes":[{"id":1,"job_id":1}]}'
call POST /v1/apps/fuzz/workflows/1/run '{"init_params":{"go":"left"}}'

# From the scratch dir: schemathesis keeps its replay files (`.schemathesis/`) in the current one.
cd "$work"
status=0
st --config-file "$here/schemathesis.toml" run "$base/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$examples" --seed "$seed" --generation-database none \
    --workers 2 --request-timeout 10 --no-color --suppress-health-check all || status=$?

if grep -q 'panicked' "$work/server.log"; then
    echo "schemathesis: the server logged a panic:" >&2
    grep -B2 -A8 'panicked' "$work/server.log" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "schemathesis: failed (exit $status); server log tail:" >&2
    tail -n 40 "$work/server.log" >&2
fi
exit "$status"
