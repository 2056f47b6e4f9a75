#!/usr/bin/env bash
# A single-node Apache Cassandra on loopback, for tests and local runs.
#
#   deploy/cassandra/cassandra.sh fetch
#       copy cassandra-all 5.0 and its dependencies from Maven Central into
#       target/cassandra/lib (once; later calls return at once)
#   deploy/cassandra/cassandra.sh run DIR NATIVE_PORT STORAGE_PORT
#       run a node in the foreground with its data under DIR, CQL on
#       127.0.0.1:NATIVE_PORT; the process is java itself (exec), so killing
#       this pid kills the node. DIR is kept: running again restarts the same
#       node with its data.
#
# Needs Java 11 or 17 (Cassandra 5.0) and Maven. The commit log is synced
# in groups of 10 ms before a write is acknowledged, so a node killed with
# SIGKILL keeps every write it acknowledged.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
LIB="$ROOT/target/cassandra/lib"

java_ok() {
  local v
  v="$("${JAVA:-java}" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "$v" = 17 ] || [ "$v" = 11 ]
}

fetch() {
  if [ -f "$LIB/.complete" ]; then return 0; fi
  command -v mvn >/dev/null 2>&1 || { echo "error: Maven (mvn) is needed to fetch Cassandra" >&2; exit 1; }
  echo "fetching org.apache.cassandra:cassandra-all from Maven Central into $LIB" >&2
  rm -rf "$LIB"
  mvn -q -B -f "$ROOT/deploy/cassandra/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIB" -DincludeScope=runtime >&2
  touch "$LIB/.complete"
}

run() {
  local dir="$1" native="$2" storage="$3"
  fetch
  if [ -n "${JAVA_HOME:-}" ]; then JAVA="$JAVA_HOME/bin/java"; fi
  java_ok || { echo "error: Cassandra 5.0 needs Java 11 or 17 (set JAVA_HOME)" >&2; exit 1; }
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  cat > "$dir/cassandra.yaml" <<YAML
cluster_name: adshard-local-$native
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
commitlog_sync: group
commitlog_sync_group_window: 10ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $storage
native_transport_port: $native
start_native_transport: true
endpoint_snitch: SimpleSnitch
data_file_directories: [$dir/data]
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc
auto_bootstrap: false
concurrent_compactors: 1
YAML
  cat > "$dir/logback.xml" <<XML
<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level %date{HH:mm:ss.SSS} [%thread] %logger{0} %msg%n</pattern></encoder>
  </appender>
  <root level="\${CASSANDRA_LOG_LEVEL:-WARN}"><appender-ref ref="OUT"/></root>
</configuration>
XML
  # JVM flags from Cassandra's conf/jvm17-server.options (module access the
  # server needs on Java 17), plus a small heap for a test node.
  exec "${JAVA:-java}" -Xms${CASSANDRA_HEAP:-1g} -Xmx${CASSANDRA_HEAP:-1g} \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:+ExitOnOutOfMemoryError -XX:MaxTenuringThreshold=1 \
    -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true \
    -javaagent:"$(ls "$LIB"/jamm-*.jar | head -1)" \
    -Dcassandra.config="file://$dir/cassandra.yaml" \
    -Dcassandra-foreground=yes \
    -Dcassandra.storagedir="$dir" \
    -Dlogback.configurationFile="$dir/logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.ring_delay_ms=100 \
    -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon
}

case "${1:-}" in
  fetch) fetch ;;
  run) [ $# -eq 4 ] || { echo "usage: $0 run DIR NATIVE_PORT STORAGE_PORT" >&2; exit 2; }; run "$2" "$3" "$4" ;;
  *) echo "usage: $0 fetch | run DIR NATIVE_PORT STORAGE_PORT" >&2; exit 2 ;;
esac
