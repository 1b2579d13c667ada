#!/usr/bin/env bash
# Single-node Apache Kafka in KRaft mode (combined broker + controller) on loopback.
#
#   deploy/kafka/broker.sh start DATA_DIR PORT CONTROLLER_PORT   # formats storage once, starts, waits until ready
#   deploy/kafka/broker.sh stop  DATA_DIR                        # SIGTERM, waits for a clean shutdown
#
# Jars come from Maven Central through deploy/kafka/pom.xml (make kafka-fetch). Small heap: the broker shares
# a 2-core machine with the pipeline. Single-broker defaults (replication 1, min ISR 1); a cluster sets its own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="${CDP_KAFKA_LIB:-$root/.cache/kafka/lib}"
cmd="${1:?start|stop}"
data="$(mkdir -p "${2:?data dir}" && cd "$2" && pwd)"
pidfile="$data/broker.pid"

java_cmd() {
  java -Xms256m -Xmx${CDP_KAFKA_HEAP:-512m} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" -Dkafka.logs.dir="$data/logs" \
    -cp "$lib/*" "$@"
}

case "$cmd" in
start)
  port="${3:?port}"; cport="${4:?controller port}"
  [ -d "$lib" ] && ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1 || { echo "Kafka jars missing in $lib: run make kafka-fetch" >&2; exit 1; }
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "broker already running (pid $(cat "$pidfile"))"; exit 0; fi
  mkdir -p "$data/logs" "$data/kraft"
  # Readiness is read from the logs: move the previous run's away so its "started" line cannot count.
  for f in stdout.log server.log; do [ -f "$data/logs/$f" ] && mv -f "$data/logs/$f" "$data/logs/$f.prev"; done
  sed -e "s#@PORT@#$port#g" -e "s#@CPORT@#$cport#g" -e "s#@LOGDIR@#$data/kraft#g" \
    "$here/server.properties.in" > "$data/server.properties"
  if [ ! -f "$data/kraft/meta.properties" ]; then
    java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" \
      -c "$data/server.properties" > "$data/logs/format.log" 2>&1
  fi
  nohup java -Xms256m -Xmx${CDP_KAFKA_HEAP:-512m} -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$here/log4j.properties" -Dkafka.logs.dir="$data/logs" \
    -cp "$lib/*" kafka.Kafka "$data/server.properties" > "$data/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 120); do
    if grep -q "Kafka Server started" "$data/logs/stdout.log" "$data/logs/server.log" 2>/dev/null; then
      echo "Kafka broker ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"; exit 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "broker exited; see $data/logs" >&2; tail -20 "$data/logs/stdout.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "broker did not start within 60 s; see $data/logs" >&2; exit 1
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
*) echo "usage: $0 start|stop DATA_DIR [PORT CONTROLLER_PORT]" >&2; exit 2 ;;
esac
