#!/usr/bin/env bash
# Genuine Apache Kafka (KRaft mode, one combined broker+controller) on 127.0.0.1:19092 for the
# end-to-end tests. Jars come from Maven Central through mvn; state under
# ${MAMORI_SERVICES_DIR:-.services}/kafka. Usage: kafka.sh install|start|stop|restart|status
set -euo pipefail
cd "$(dirname "$0")/../.."
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="2.24.3"
PORT="${MAMORI_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${MAMORI_KAFKA_CONTROLLER_PORT:-19093}"
BASE="$(realpath -m "${MAMORI_SERVICES_DIR:-.services}")/kafka"
LIBS="$BASE/libs-$KAFKA_VERSION-$LOG4J_VERSION"
PIDFILE="$BASE/kafka.pid"

install() {
    mkdir -p "$BASE"
    if [ -f "$LIBS/.complete" ]; then return 0; fi
    command -v java >/dev/null || scripts/apt-install.sh openjdk-17-jre-headless
    command -v mvn >/dev/null || scripts/apt-install.sh maven
    mkdir -p "$BASE/mvn"
    cat > "$BASE/mvn/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.mamori</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
    rm -rf "$LIBS.tmp"
    (cd "$BASE/mvn" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory="$LIBS.tmp" -DincludeScope=runtime >"$BASE/mvn.log" 2>&1) || { tail -20 "$BASE/mvn.log" >&2; exit 1; }
    touch "$LIBS.tmp/.complete"
    rm -rf "$LIBS" && mv "$LIBS.tmp" "$LIBS"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

configure() {
    mkdir -p "$BASE/data"
    cat > "$BASE/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$BASE/data
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    cat > "$BASE/log4j2.properties" <<L4J
status = error
appender.f.type = File
appender.f.name = F
appender.f.fileName = $BASE/server.log
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.f.ref = F
logger.kafka.name = kafka
logger.kafka.level = INFO
L4J
}

JAVA=(java -Xms256m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
      "-Dlog4j2.configurationFile=$BASE/log4j2.properties" -cp "$LIBS/*")

start() {
    install
    if ! running; then
        configure
        if [ ! -f "$BASE/data/meta.properties" ]; then
            local id
            id="$("${JAVA[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
            "${JAVA[@]}" kafka.tools.StorageTool format -t "$id" -c "$BASE/server.properties" \
                >"$BASE/format.log" 2>&1
        fi
        nohup "${JAVA[@]}" kafka.Kafka "$BASE/server.properties" >"$BASE/stdout.log" 2>&1 &
        echo $! > "$PIDFILE"
        for _ in $(seq 1 240); do
            if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then break; fi
            running || { echo "kafka failed to start, see $BASE/server.log" >&2; exit 1; }
            sleep 0.25
        done
        (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null || { echo "kafka not listening" >&2; exit 1; }
    fi
    echo "export MAMORI_TEST_KAFKA=127.0.0.1:$PORT"
    echo "export MAMORI_TEST_KAFKA_CTL=$(realpath "$0")"
}

stop() {
    if running; then
        local pid; pid="$(cat "$PIDFILE")"
        kill "$pid"
        for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    reset) stop; rm -rf "$BASE/data" ;;
    status) running && echo running || { echo stopped; exit 1; } ;;
    *) echo "usage: $0 install|start|stop|restart|reset|status" >&2; exit 2 ;;
esac
