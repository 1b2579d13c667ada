#!/usr/bin/env bash
# `make run`: `cdp run` in the foreground beside the local broker, stopped in that order.
#
#   deploy/run.sh KAFKA_DATA COMMAND...     # e.g. deploy/run.sh .cdp-data/kafka .venv/bin/cdp run
#
# The broker was started in a session of its own (make kafka-up), so a Ctrl-C or a SIGTERM to this run's process
# group reaches cdp and not the broker: cdp flushes and commits into a broker that is still there, and the broker
# is stopped here after cdp has exited. Without a local broker (CDP_KAFKA_BOOTSTRAP given) only cdp runs.
set -uo pipefail
data="${1:?kafka data dir}"; shift
here="$(cd "$(dirname "$0")" && pwd)"

"$@" &
child=$!
forward() { kill -TERM "$child" 2>/dev/null; }
trap forward TERM INT HUP
status=0
# `wait` returns early when a trapped signal arrives: wait again until cdp has really exited.
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
trap - TERM INT HUP
[ -n "${LOCAL_BROKER:-}" ] && "$here/kafka/broker.sh" stop "$data"
exit "$status"
