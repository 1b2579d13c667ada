#!/usr/bin/env bash
# Kafka Connect in distributed mode on loopback, against our broker, with its own config/offset/status topics.
#
#   deploy/connect/connect.sh start DATA_DIR PORT BOOTSTRAP [TOPIC_PREFIX]   # starts, waits until the REST API answers
#   deploy/connect/connect.sh stop  DATA_DIR                                 # SIGTERM, waits for a clean shutdown
#
# Jars (Connect at the broker's Kafka version and the Debezium PostgreSQL connector) come from Maven Central
# through deploy/connect/pom.xml (make connect-fetch). The worker's group and its three topics are named after
# TOPIC_PREFIX (default cdp), so several deployments can share a broker. Connectors are registered by
# `cdp sources create --kind postgres` over the REST API.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="${CDP_CONNECT_LIB:-$root/.cache/connect/lib}"
cmd="${1:?start|stop}"
data="$(mkdir -p "${2:?data dir}" && cd "$2" && pwd)"
pidfile="$data/connect.pid"

case "$cmd" in
start)
  port="${3:?port}"; bootstrap="${4:?bootstrap}"; prefix="${5:-cdp}"
  ls "$lib"/connect-runtime-*.jar >/dev/null 2>&1 || { echo "Connect jars missing in $lib: run make connect-fetch" >&2; exit 1; }
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "Connect already running (pid $(cat "$pidfile"))"; exit 0; fi
  mkdir -p "$data/logs"
  sed -e "s#@PORT@#$port#g" -e "s#@BOOTSTRAP@#$bootstrap#g" -e "s#@PREFIX@#$prefix#g" \
    "$here/worker.properties.in" > "$data/worker.properties"
  # Small heap and one JIT thread: Connect shares a 2-core machine with the broker and the pipeline.
  nohup java -Xms128m -Xmx${CDP_CONNECT_HEAP:-512m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$here/log4j.properties" -Dconnect.logs.dir="$data/logs" \
    -cp "$lib/*" org.apache.kafka.connect.cli.ConnectDistributed "$data/worker.properties" \
    > "$data/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 240); do
    # The REST API answers once the worker has joined its group and read the config topic.
    if curl -sf "http://127.0.0.1:$port/connectors" >/dev/null 2>&1; then
      echo "Kafka Connect ready on http://127.0.0.1:$port (pid $(cat "$pidfile"))"; exit 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "Connect exited; see $data/logs" >&2; tail -20 "$data/logs/stdout.log" >&2; exit 1; }
    sleep 0.25
  done
  echo "Connect did not start within 60 s; see $data/logs" >&2; exit 1
  ;;
stop)
  [ -f "$pidfile" ] || exit 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
  ;;
*) echo "usage: $0 start|stop DATA_DIR [PORT BOOTSTRAP [TOPIC_PREFIX]]" >&2; exit 2 ;;
esac
