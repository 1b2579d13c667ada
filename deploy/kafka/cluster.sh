#!/usr/bin/env bash
# A 3-node Apache Kafka cluster in KRaft mode on loopback: each node a broker and a controller voter (combined
# mode), replication 3 and min.insync.replicas 2 (cluster.properties.in), the same jars as broker.sh.
#
#   deploy/kafka/cluster.sh start   DATA_DIR PORTS CONTROLLER_PORTS  # e.g. 19092,19093,19094 19095,19096,19097
#   deploy/kafka/cluster.sh stop    DATA_DIR                         # every node, cleanly
#   deploy/kafka/cluster.sh kill    DATA_DIR N                       # SIGKILL node N (1-3): a crash
#   deploy/kafka/cluster.sh restart DATA_DIR N                       # start node N again, wait until it is up
#   deploy/kafka/cluster.sh bootstrap DATA_DIR                       # prints the bootstrap servers
#
# Node N lives in DATA_DIR/nodeN (broker.sh's layout); the ports and the cluster id are kept in DATA_DIR, so
# kill and restart need only the node number. What cdp needs on a cluster: deploy/kafka/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:?start|stop|kill|restart|bootstrap}"
data="$(mkdir -p "${2:?data dir}" && cd "$2" && pwd)"
conf="$data/cluster.conf"

load() {
  [ -f "$conf" ] || { echo "no cluster in $data (start it first)" >&2; exit 1; }
  # shellcheck source=/dev/null
  . "$conf"
  IFS=, read -r -a port <<< "$PORTS"
  IFS=, read -r -a cport <<< "$CONTROLLER_PORTS"
  voters=""
  for n in 1 2 3; do voters="${voters:+$voters,}$n@127.0.0.1:${cport[$((n - 1))]}"; done
}

node() {  # node N SUBCOMMAND: broker.sh for node N with the cluster's settings
  local n="$1" sub="$2"
  CDP_KAFKA_NODE_ID="$n" CDP_KAFKA_VOTERS="$voters" CDP_KAFKA_CLUSTER_ID="$CLUSTER_ID" \
    CDP_KAFKA_OVERLAY="$here/cluster.properties.in" \
    "$here/broker.sh" "$sub" "$data/node$n" "${port[$((n - 1))]}" "${cport[$((n - 1))]}"
}

check_node() { [[ "${1:-}" =~ ^[123]$ ]] || { echo "node: 1, 2 or 3" >&2; exit 2; }; }

case "$cmd" in
start)
  ports="${3:?PORTS: three broker ports, comma separated}"; cports="${4:?CONTROLLER_PORTS: three, comma separated}"
  [ "$(tr -cd , <<< "$ports$cports" | wc -c)" -eq 4 ] || { echo "three ports each, comma separated" >&2; exit 2; }
  if [ ! -f "$conf" ]; then
    # A cluster id is 16 random bytes in URL-safe base64 without padding (what StorageTool random-uuid prints).
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    printf 'PORTS=%s\nCONTROLLER_PORTS=%s\nCLUSTER_ID=%s\n' "$ports" "$cports" "$id" > "$conf"
  fi
  load
  # Launched side by side: a node becomes ready only once a quorum of controllers (2 of 3) has elected a leader.
  pids=()
  for n in 1 2 3; do node "$n" launch & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
  for n in 1 2 3; do node "$n" wait; done
  echo "Kafka cluster ready: $PORTS" | sed 's/\([0-9]\+\)/127.0.0.1:\1/g'
  ;;
stop)
  [ -f "$conf" ] || exit 0
  load
  # Side by side: one node stopping after the others would wait for a controller quorum that is gone.
  for n in 1 2 3; do "$here/broker.sh" stop "$data/node$n" & done
  wait
  ;;
kill) check_node "${3:-}"; load; "$here/broker.sh" kill "$data/node$3" ;;
restart) check_node "${3:-}"; load; node "$3" start ;;
bootstrap) load; sed 's/\([0-9]\+\)/127.0.0.1:\1/g' <<< "$PORTS" ;;
*) echo "usage: $0 start|stop|kill|restart|bootstrap DATA_DIR [...]" >&2; exit 2 ;;
esac
