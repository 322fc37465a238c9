#!/usr/bin/env bash
# Runs a single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1 in the foreground.
# usage: run-kafka.sh DATA_DIR BROKER_PORT CONTROLLER_PORT [LIBS_DIR]
# Formats DATA_DIR on first use (keeps it afterwards, so a restart keeps topics and offsets).
# Prints "Kafka Server started" when ready.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="$1"; broker="$2"; controller="$3"; libs="${4:-$here/libs}"
mkdir -p "$data"
props="$data/server.properties"
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$broker,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$broker
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$here/log4j.properties" -cp "$libs/*")
if [ ! -f "$data/logs/meta.properties" ]; then
  java "${java_opts[@]}" kafka.tools.StorageTool format --ignore-formatted \
    -t "$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)" -c "$props" >/dev/null
fi
exec java "${java_opts[@]}" kafka.Kafka "$props"
