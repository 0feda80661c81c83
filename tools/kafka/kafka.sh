#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller in one JVM) for development,
# integration and chaos tests. Jars come from Maven Central through tools/kafka/pom.xml;
# everything else lives under $KAFKA_CACHE_DIR (default <repo>/.cache/kafka):
#   libs/  jars (kept by `reset`)        data/  KRaft storage (log.dirs)
#   logs/  server.log, kafka.out         run/   pid, server.properties, log4j, cluster.id
# A second broker (the second region of mirror-maker.sh, tests) sets its own KAFKA_CACHE_DIR and ports,
# shares the jars with KAFKA_LIBS_DIR and adds settings with KAFKA_EXTRA_PROPERTIES.
# Usage: tools/kafka/kafka.sh start|stop|status|reset|kill|fetch|tool <Class|alias> [args...]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
KAFKA_TOOL_HEAP_OPTS="${KAFKA_TOOL_HEAP_OPTS:--Xmx512m}"
KAFKA_START_TIMEOUT_S="${KAFKA_START_TIMEOUT_S:-90}"
KAFKA_STOP_TIMEOUT_S="${KAFKA_STOP_TIMEOUT_S:-30}"
KAFKA_CACHE_DIR="${KAFKA_CACHE_DIR:-$REPO_ROOT/.cache/kafka}"
# Extra server.properties lines (newline-separated), appended last so that they win (java.util.Properties
# keeps the last value of a key).
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
mkdir -p "$KAFKA_CACHE_DIR"
CACHE="$(cd "$KAFKA_CACHE_DIR" && pwd)"
KAFKA_LIBS_DIR="${KAFKA_LIBS_DIR:-$CACHE/libs}"
mkdir -p "$KAFKA_LIBS_DIR"
LIBS="$(cd "$KAFKA_LIBS_DIR" && pwd)"
DATA="$CACHE/data"
LOGS="$CACHE/logs"
RUN="$CACHE/run"
PID_FILE="$RUN/kafka.pid"
PORT_FILE="$RUN/kafka.port"
PROPS="$RUN/server.properties"
LOG4J="$RUN/log4j.properties"
TOOLS_LOG4J="$RUN/tools-log4j.properties"
CLUSTER_ID_FILE="$RUN/cluster.id"
MARKER="$LIBS/.fetched"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

# Same defaults as Kafka's bin/kafka-run-class.sh.
JVM_PERF_OPTS="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

usage() {
  cat <<EOF
usage: $(basename "$0") <command> [args]
  start     fetch jars if needed, format storage once, start the broker, wait until it answers
  stop      SIGTERM (controlled shutdown, up to ${KAFKA_STOP_TIMEOUT_S}s), then SIGKILL
  status    exit 0 if running, 3 if not
  reset     stop, then delete data/ and logs/ (libs/ is kept)
  kill      SIGKILL the broker (chaos tests)
  fetch     only download the jars into $LIBS
  tool <ClassName|alias> [args...]   run a Kafka tool with the cached classpath
            aliases: $(tool_aliases)
env: KAFKA_PORT=$KAFKA_PORT KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT KAFKA_CACHE_DIR=$CACHE
     KAFKA_LIBS_DIR=$LIBS KAFKA_EXTRA_PROPERTIES (lines appended to server.properties)
     KAFKA_HEAP_OPTS="$KAFKA_HEAP_OPTS" KAFKA_START_TIMEOUT_S=$KAFKA_START_TIMEOUT_S
EOF
}

# ---------------------------------------------------------------- jars

libs_ready() {
  [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$(pom_digest)" ]] &&
    compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null &&
    compgen -G "$LIBS/kafka-tools-[0-9]*.jar" >/dev/null &&
    compgen -G "$LIBS/slf4j-reload4j-*.jar" >/dev/null
}

fetch() { fetch_jars "Apache Kafka"; }

# ---------------------------------------------------------------- process helpers

pid_is_broker() { # pid -> 0 when it is our broker JVM (guards against recycled pids)
  local pid="$1" cmd
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  else
    cmd="$(ps -ww -p "$pid" -o args= 2>/dev/null || true)"
  fi
  [[ "$cmd" == *"kafka.Kafka $PROPS"* ]]
}

broker_pid() { # prints the pid of our running broker, or fails
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE")"
  pid_is_broker "$pid" || return 1
  printf '%s\n' "$pid"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -1 || true; }

running_port() { if [[ -f "$PORT_FILE" ]]; then cat "$PORT_FILE"; else printf '%s\n' "$KAFKA_PORT"; fi; }

# Byte offset into server.log, so `start` only trusts "started" lines written after it.
log_size() { if [[ -f "$LOGS/server.log" ]]; then stat -c %s "$LOGS/server.log"; else echo 0; fi; }

started_since() { # offset -> 0 once the broker logged its start after that offset
  [[ -f "$LOGS/server.log" ]] || return 1
  local offset="$1"
  (( $(log_size) >= offset )) || offset=0 # rolled over: the new file is all new
  # Not `grep -q`: it exits at the first match, tail dies of SIGPIPE and pipefail fails.
  tail -c +"$((offset + 1))" "$LOGS/server.log" | grep -F 'Kafka Server started' >/dev/null
}

print_log_tail() {
  log "last 30 lines of $LOGS/server.log:"
  tail -n 30 "$LOGS/server.log" >&2 2>/dev/null || true
  if [[ -s "$LOGS/kafka.out" ]]; then
    log "last 30 lines of $LOGS/kafka.out (JVM stdout/stderr):"
    tail -n 30 "$LOGS/kafka.out" >&2
  fi
}

# One start/stop/reset/fetch at a time: tests may call `start` in parallel. The lock is
# fd 9 of this shell; children that outlive the command (the broker) must not inherit it.
lock() {
  mkdir -p "$RUN"
  exec 9>"$RUN/lock"
  flock -w 180 9 || die "could not take $RUN/lock within 180 s"
}

# ---------------------------------------------------------------- config files

# Config files are written to a temporary name and renamed, so a JVM starting at the same
# moment never reads a half-written file.
write_log4j() {
  cat >"$LOG4J.tmp.$$" <<'EOF'
# Generated by tools/kafka/kafka.sh; edits are overwritten on start.
log4j.rootLogger=INFO, kafkaAppender

log4j.appender.kafkaAppender=org.apache.log4j.RollingFileAppender
log4j.appender.kafkaAppender.File=${kafka.logs.dir}/server.log
log4j.appender.kafkaAppender.MaxFileSize=100MB
log4j.appender.kafkaAppender.MaxBackupIndex=3
log4j.appender.kafkaAppender.layout=org.apache.log4j.PatternLayout
log4j.appender.kafkaAppender.layout.ConversionPattern=[%d] %p %m (%c)%n

log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
# Noisy at INFO: one line per request, per partition state change, per ACL check.
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.zookeeper=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.metrics=WARN
EOF
  mv -f "$LOG4J.tmp.$$" "$LOG4J"
  # Tools (perf test, topics, ...) log WARN to stderr, like Kafka's tools-log4j.properties.
  cat >"$TOOLS_LOG4J.tmp.$$" <<'EOF'
# Generated by tools/kafka/kafka.sh; edits are overwritten.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  mv -f "$TOOLS_LOG4J.tmp.$$" "$TOOLS_LOG4J"
}

write_server_properties() {
  cat >"$PROPS.tmp.$$" <<EOF
# Generated by tools/kafka/kafka.sh; edits are overwritten on start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

# One node: every replication factor and ISR is 1. Transactions (exactly-once) need
# the transaction state log to be creatable with these.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
default.replication.factor=1
# Internal topics default to 50 partitions each; 8 is plenty on a 2-core machine.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
# The project creates its topics explicitly (partition count is part of the design).
auto.create.topics.enable=false
num.partitions=1
# After a SIGKILL (chaos tests) the restarted broker cannot register until the dead
# incarnation's session expires: 9 s by default, 4 s here. Heartbeats are in-process.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000

# Modest threads and memory for a 2-core development machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
EOF
  if [[ -n "$KAFKA_EXTRA_PROPERTIES" ]]; then
    printf '\n# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$PROPS.tmp.$$"
  fi
  mv -f "$PROPS.tmp.$$" "$PROPS"
}

# ---------------------------------------------------------------- commands

java_run() { # class args... (tool JVM: small heap, WARN logs to stderr)
  # shellcheck disable=SC2086
  "$JAVA" $KAFKA_TOOL_HEAP_OPTS -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$TOOLS_LOG4J" -Dkafka.logs.dir="$LOGS" \
    -cp "$LIBS/*" "$@"
}

format_storage_once() {
  [[ -f "$DATA/meta.properties" ]] && return 0
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    java_run kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  # Without meta.properties the broker refuses the directory: whatever is left is unusable.
  rm -rf "$DATA"
  mkdir -p "$DATA"
  log "formatting KRaft storage in $DATA (cluster id $(cat "$CLUSTER_ID_FILE"))"
  java_run kafka.tools.StorageTool format -t "$(cat "$CLUSTER_ID_FILE")" -c "$PROPS" >&2
}

wait_started() { # pid offset t0 -> 0 when answering, dies on timeout or crash
  local pid="$1" offset="$2" t0="$3"
  while true; do
    if ! pid_is_broker "$pid"; then
      print_log_tail
      die "broker (pid $pid) exited during start"
    fi
    if port_open "$KAFKA_PORT" && started_since "$offset"; then
      return 0
    fi
    if (( SECONDS - t0 >= KAFKA_START_TIMEOUT_S )); then
      print_log_tail
      die "broker (pid $pid) did not answer on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT_S}s (still running; try: $0 stop)"
    fi
    sleep 0.5
  done
}

cmd_start() {
  local t0=$SECONDS pid offset port
  lock
  if pid="$(broker_pid)"; then
    port="$(running_port)"
    [[ "$port" == "$KAFKA_PORT" ]] || log "note: the running broker listens on $port, not KAFKA_PORT=$KAFKA_PORT"
    if port_open "$port"; then
      echo "kafka already running: bootstrap 127.0.0.1:$port, pid $pid, log $LOGS/server.log"
      return 0
    fi
    log "broker pid $pid is running but not answering yet: waiting"
    offset="$(cat "$RUN/kafka.log-offset" 2>/dev/null || echo 0)"
    KAFKA_PORT="$port" wait_started "$pid" "$offset" "$t0"
    echo "kafka running: bootstrap 127.0.0.1:$port, pid $pid, log $LOGS/server.log"
    return 0
  fi
  rm -f "$PID_FILE"
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$port"; then
      die "port 127.0.0.1:$port is taken by something that is not this broker ($(port_owner "$port")); stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
    fi
  done
  fetch
  mkdir -p "$DATA" "$LOGS" "$RUN"
  write_log4j
  write_server_properties
  format_storage_once
  offset="$(log_size)"
  printf '%s\n' "$KAFKA_PORT" >"$PORT_FILE"
  printf '%s\n' "$offset" >"$RUN/kafka.log-offset"
  # setsid: the broker outlives the caller's process group (test runners kill theirs).
  # shellcheck disable=SC2086
  setsid nohup "$JAVA" $KAFKA_HEAP_OPTS $JVM_PERF_OPTS -XX:+ExitOnOutOfMemoryError \
    -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$LOGS" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >"$LOGS/kafka.out" 2>&1 </dev/null 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  sleep 0.2
  wait_started "$pid" "$offset" "$t0"
  echo "kafka started in $((SECONDS - t0))s: bootstrap 127.0.0.1:$KAFKA_PORT, pid $pid, log $LOGS/server.log"
}

cmd_stop() {
  local pid
  lock
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"
    echo "kafka not running"
    return 0
  fi
  stop_pid "$pid" "$KAFKA_STOP_TIMEOUT_S" pid_is_broker broker
  rm -f "$PID_FILE"
  echo "kafka stopped (pid $pid)"
}

cmd_kill() {
  local pid
  if ! pid="$(broker_pid)"; then
    echo "kafka not running"
    return 0
  fi
  kill_pid "$pid"
  rm -f "$PID_FILE"
  echo "kafka killed (pid $pid)"
}

cmd_status() {
  local pid port
  port="$(running_port)"
  if pid="$(broker_pid)"; then
    if port_open "$port"; then
      echo "kafka running: bootstrap 127.0.0.1:$port, pid $pid, log $LOGS/server.log"
    else
      echo "kafka running but not answering on 127.0.0.1:$port yet: pid $pid, log $LOGS/server.log"
    fi
    return 0
  fi
  echo "kafka not running (port $port)"
  return 3
}

cmd_reset() {
  cmd_stop
  # cmd_stop took the lock (fd 9) in this same shell; it is still held here.
  rm -rf "$DATA" "$LOGS"
  echo "kafka data and logs deleted ($DATA, $LOGS); libs kept"
}

tool_aliases() { echo "topics producer-perf-test consumer-perf-test consumer-groups console-consumer console-producer get-offsets transactions configs metadata-quorum storage"; }

tool_class() {
  case "$1" in
    topics) echo org.apache.kafka.tools.TopicCommand ;;
    producer-perf-test) echo org.apache.kafka.tools.ProducerPerformance ;;
    consumer-perf-test) echo org.apache.kafka.tools.ConsumerPerformance ;;
    consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer) echo kafka.tools.ConsoleProducer ;; # still in core (Scala) in 3.9
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
    configs) echo kafka.admin.ConfigCommand ;;
    metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    storage) echo kafka.tools.StorageTool ;;
    *) echo "$1" ;;
  esac
}

cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: $0 tool <ClassName|alias> [args...]; aliases: $(tool_aliases)"
  local class; class="$(tool_class "$1")"
  shift
  if ! libs_ready; then
    lock
    fetch
    exec 9>&- # release the lock: a long tool run must not block start/stop
  fi
  check_slf4j_binding
  mkdir -p "$LOGS" "$RUN"
  [[ -f "$TOOLS_LOG4J" ]] || write_log4j
  java_run "$class" "$@"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    kill) cmd_kill ;;
    fetch) lock; fetch; echo "kafka jars in $LIBS" ;;
    tool) cmd_tool "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
