#!/usr/bin/env bash
# Apache Kafka in KRaft mode (combined broker + controller) on loopback: a single node, or one node of the
# 3-node cluster that deploy/kafka/cluster.sh runs.
#
#   deploy/kafka/broker.sh start  DATA_DIR PORT CONTROLLER_PORT   # formats storage once, starts, waits until ready
#   deploy/kafka/broker.sh launch DATA_DIR PORT CONTROLLER_PORT   # the same without waiting (the nodes of a
#                                                                 # cluster need each other's votes to get ready)
#   deploy/kafka/broker.sh wait   DATA_DIR                        # until the node says it has started
#   deploy/kafka/broker.sh stop   DATA_DIR                        # SIGTERM, waits for a clean shutdown
#   deploy/kafka/broker.sh kill   DATA_DIR                        # SIGKILL: a crash, for fault-injection tests
#
# A cluster node is described by CDP_KAFKA_NODE_ID (default 1), CDP_KAFKA_VOTERS (the controller quorum, default
# this node alone), CDP_KAFKA_CLUSTER_ID (one id for every node; default a random one, once) and
# CDP_KAFKA_OVERLAY (a properties file appended to server.properties.in: its keys win).
#
# Jars come from Maven Central through deploy/kafka/pom.xml (make kafka-fetch). Small heap: the broker shares
# a 2-core machine with the pipeline. Single-broker defaults (replication 1, min ISR 1); a cluster sets its own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="${CDP_KAFKA_LIB:-$root/.cache/kafka/lib}"
cmd="${1:?start|launch|wait|stop|kill}"
data="$(mkdir -p "${2:?data dir}" && cd "$2" && pwd)"
pidfile="$data/broker.pid"

# The heap is its full size from the start (-Xms = -Xmx, pages touched at start, as Kafka's own guidance sets
# the two equal): a broker's memory is what CDP_KAFKA_HEAP says from its first minute, not a heap that grows
# towards it under load.
java_opts() {
  local heap="${CDP_KAFKA_HEAP:-512m}"
  echo "-Xms$heap -Xmx$heap -XX:+AlwaysPreTouch -XX:+UseG1GC -Djava.awt.headless=true" \
    "-Dlog4j.configuration=file:$here/log4j.properties -Dkafka.logs.dir=$data/logs"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

launch() {
  local port="${1:?port}" cport="${2:?controller port}"
  local node="${CDP_KAFKA_NODE_ID:-1}" voters="${CDP_KAFKA_VOTERS:-1@127.0.0.1:$2}"
  [ -d "$lib" ] && ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1 || { echo "Kafka jars missing in $lib: run make kafka-fetch" >&2; exit 1; }
  if running; then echo "broker already running (pid $(cat "$pidfile"))"; return 0; fi
  mkdir -p "$data/logs" "$data/kraft"
  # Readiness is read from the logs: move the previous run's away so its "started" line cannot count.
  for f in stdout.log server.log; do [ -f "$data/logs/$f" ] && mv -f "$data/logs/$f" "$data/logs/$f.prev"; done
  cat "$here/server.properties.in" ${CDP_KAFKA_OVERLAY:+"$CDP_KAFKA_OVERLAY"} |
    sed -e "s#@PORT@#$port#g" -e "s#@CPORT@#$cport#g" -e "s#@LOGDIR@#$data/kraft#g" \
        -e "s#@NODE@#$node#g" -e "s#@VOTERS@#$voters#g" > "$data/server.properties"
  if [ ! -f "$data/kraft/meta.properties" ]; then
    # shellcheck disable=SC2046
    local id="${CDP_KAFKA_CLUSTER_ID:-$(java $(java_opts) -cp "$lib/*" kafka.tools.StorageTool random-uuid)}"
    # shellcheck disable=SC2046
    java $(java_opts) -cp "$lib/*" kafka.tools.StorageTool format -t "$id" -c "$data/server.properties" \
      > "$data/logs/format.log" 2>&1
  fi
  # shellcheck disable=SC2046
  nohup java $(java_opts) -cp "$lib/*" kafka.Kafka "$data/server.properties" > "$data/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
}

wait_ready() {
  local port
  port="$(sed -n 's#^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*#\1#p' "$data/server.properties")"
  for _ in $(seq 1 "${CDP_KAFKA_START_WAIT:-240}"); do
    if grep -q "Kafka Server started" "$data/logs/stdout.log" "$data/logs/server.log" 2>/dev/null; then
      echo "Kafka broker ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0
    fi
    running || { echo "broker exited; see $data/logs" >&2; tail -20 "$data/logs/stdout.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "broker did not start in time; see $data/logs" >&2; exit 1
}

case "$cmd" in
start) launch "${3:-}" "${4:-}"; wait_ready ;;
launch) launch "${3:-}" "${4:-}" ;;
wait) wait_ready ;;
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
kill)
  if running; then
    pid="$(cat "$pidfile")"
    kill -KILL "$pid"
    # Gone, or a zombie waiting for a parent that does not reap it.
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
  ;;
*) echo "usage: $0 start|launch|wait|stop|kill DATA_DIR [PORT CONTROLLER_PORT]" >&2; exit 2 ;;
esac
