#!/usr/bin/env bash
# MirrorMaker 2 in dedicated mode (org.apache.kafka.connect.mirror.MirrorMaker) between two local brokers,
# for the second-region demo, its test and its bench. Jars come from Maven Central through
# tools/kafka/mirror/pom.xml; everything else lives under $MM2_CACHE_DIR (default <repo>/.cache/kafka-mirror):
#   libs/  jars (shared by every MM2_CACHE_DIR through MM2_LIBS_DIR)
#   logs/  mirror-maker.log, mirror-maker.out (the JVM's stdout/stderr)
#   run/   pid, mm2.properties (rendered from tools/kafka/mirror/mm2.properties), log4j.properties
# Usage: tools/kafka/mirror-maker.sh start|stop|kill|status|fetch|config
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/mirror/pom.xml"
TEMPLATE="$SCRIPT_DIR/mirror/mm2.properties"

MM2_SOURCE_BOOTSTRAP="${MM2_SOURCE_BOOTSTRAP:-127.0.0.1:19092}"
MM2_TARGET_BOOTSTRAP="${MM2_TARGET_BOOTSTRAP:-127.0.0.1:19192}"
MM2_TOPICS="${MM2_TOPICS:-.*\\.events}"
MM2_EXACTLY_ONCE="${MM2_EXACTLY_ONCE:-enabled}"
MM2_EXTRA_PROPERTIES="${MM2_EXTRA_PROPERTIES:-}"
MM2_HEAP_OPTS="${MM2_HEAP_OPTS:--Xms128m -Xmx512m}"
MM2_START_TIMEOUT_S="${MM2_START_TIMEOUT_S:-90}"
MM2_STOP_TIMEOUT_S="${MM2_STOP_TIMEOUT_S:-30}"
MM2_CACHE_DIR="${MM2_CACHE_DIR:-$REPO_ROOT/.cache/kafka-mirror}"
mkdir -p "$MM2_CACHE_DIR"
CACHE="$(cd "$MM2_CACHE_DIR" && pwd)"
MM2_LIBS_DIR="${MM2_LIBS_DIR:-$REPO_ROOT/.cache/kafka-mirror/libs}"
mkdir -p "$MM2_LIBS_DIR"
LIBS="$(cd "$MM2_LIBS_DIR" && pwd)"
LOGS="$CACHE/logs"
RUN="$CACHE/run"
PID_FILE="$RUN/mirror-maker.pid"
CONFIG="$RUN/mm2.properties"
LOG4J="$RUN/log4j.properties"
LOG_FILE="$LOGS/mirror-maker.log"
MARKER="$LIBS/.fetched"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

JVM_PERF_OPTS="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true"

log() { printf 'mirror-maker.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

usage() {
  cat <<EOF
usage: $(basename "$0") <command>
  start     fetch jars if needed, render run/mm2.properties, start MirrorMaker 2, wait until it logs its start
  stop      SIGTERM, wait up to ${MM2_STOP_TIMEOUT_S}s, then SIGKILL
  kill      SIGKILL (what a crash does; the test and the bench use it)
  status    exit 0 if running, 3 if not
  fetch     only download the jars into $LIBS
  config    print the rendered mm2.properties
env: MM2_SOURCE_BOOTSTRAP=$MM2_SOURCE_BOOTSTRAP MM2_TARGET_BOOTSTRAP=$MM2_TARGET_BOOTSTRAP
     MM2_TOPICS='$MM2_TOPICS' MM2_EXACTLY_ONCE=$MM2_EXACTLY_ONCE (enabled|disabled)
     MM2_EXTRA_PROPERTIES (lines appended to mm2.properties) MM2_CACHE_DIR=$CACHE MM2_LIBS_DIR=$LIBS
     MM2_HEAP_OPTS="$MM2_HEAP_OPTS" MM2_START_TIMEOUT_S=$MM2_START_TIMEOUT_S
EOF
}

# ---------------------------------------------------------------- jars (as kafka.sh fetches the broker's)

libs_ready() {
  [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$(pom_digest)" ]] &&
    compgen -G "$LIBS/connect-mirror-[0-9]*.jar" >/dev/null &&
    compgen -G "$LIBS/connect-runtime-[0-9]*.jar" >/dev/null &&
    compgen -G "$LIBS/slf4j-reload4j-*.jar" >/dev/null
}

fetch() { fetch_jars "MirrorMaker 2"; }

# ---------------------------------------------------------------- process helpers

pid_is_mm2() { # pid -> 0 when it is our MirrorMaker JVM (guards against recycled pids)
  local pid="$1" cmd
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmd" == *"org.apache.kafka.connect.mirror.MirrorMaker $CONFIG"* ]]
}

mm2_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE")"
  pid_is_mm2 "$pid" || return 1
  printf '%s\n' "$pid"
}

log_size() { if [[ -f "$LOG_FILE" ]]; then stat -c %s "$LOG_FILE"; else echo 0; fi; }

started_since() { # offset -> 0 once MirrorMaker logged its start after that offset
  [[ -f "$LOG_FILE" ]] || return 1
  local offset="$1"
  (( $(log_size) >= offset )) || offset=0
  tail -c +"$((offset + 1))" "$LOG_FILE" | grep -F 'Kafka MirrorMaker started' >/dev/null
}

print_log_tail() {
  log "last 30 lines of $LOG_FILE:"
  tail -n 30 "$LOG_FILE" >&2 2>/dev/null || true
  if [[ -s "$LOGS/mirror-maker.out" ]]; then
    log "last 30 lines of $LOGS/mirror-maker.out (JVM stdout/stderr):"
    tail -n 30 "$LOGS/mirror-maker.out" >&2
  fi
}

lock() {
  mkdir -p "$RUN"
  exec 9>"$RUN/lock"
  flock -w 180 9 || die "could not take $RUN/lock within 180 s"
}

# ---------------------------------------------------------------- config files

render_config() { # the template with @NAME@ replaced, then MM2_EXTRA_PROPERTIES
  [[ "$MM2_EXACTLY_ONCE" == enabled || "$MM2_EXACTLY_ONCE" == disabled ]] ||
    die "MM2_EXACTLY_ONCE must be enabled or disabled, not '$MM2_EXACTLY_ONCE'"
  local esc_topics
  esc_topics="$(printf '%s' "$MM2_TOPICS" | sed 's/\\/\\\\/g')"
  {
    printf '# Generated by tools/kafka/mirror-maker.sh from %s; edits are overwritten on start.\n' "$TEMPLATE"
    while IFS= read -r line || [[ -n "$line" ]]; do
      line="${line//@SOURCE_BOOTSTRAP@/"$MM2_SOURCE_BOOTSTRAP"}"
      line="${line//@TARGET_BOOTSTRAP@/"$MM2_TARGET_BOOTSTRAP"}"
      # java.util.Properties reads a backslash as an escape: a regex's \. is written \\.
      line="${line//@TOPICS@/"$esc_topics"}"
      line="${line//@EXACTLY_ONCE@/"$MM2_EXACTLY_ONCE"}"
      printf '%s\n' "$line"
    done <"$TEMPLATE"
    if [[ -n "$MM2_EXTRA_PROPERTIES" ]]; then
      printf '\n# MM2_EXTRA_PROPERTIES\n%s\n' "$MM2_EXTRA_PROPERTIES"
    fi
  }
}

write_config() {
  mkdir -p "$RUN"
  render_config >"$CONFIG.tmp.$$"
  mv -f "$CONFIG.tmp.$$" "$CONFIG"
  cat >"$LOG4J.tmp.$$" <<'EOF'
# Generated by tools/kafka/mirror-maker.sh; edits are overwritten on start.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=${mm2.log.file}
log4j.appender.file.MaxFileSize=100MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
# One line per client config dump and per fetch session: noise at INFO.
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.reflections=ERROR
log4j.logger.org.eclipse.jetty=WARN
EOF
  mv -f "$LOG4J.tmp.$$" "$LOG4J"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  local t0=$SECONDS pid offset
  lock
  if pid="$(mm2_pid)"; then
    echo "mirror maker already running: pid $pid, config $CONFIG, log $LOG_FILE"
    return 0
  fi
  rm -f "$PID_FILE"
  fetch
  mkdir -p "$LOGS" "$RUN"
  write_config
  offset="$(log_size)"
  # setsid: MirrorMaker outlives the caller's process group; the caller stops it with `stop` or `kill`.
  # shellcheck disable=SC2086
  setsid nohup "$JAVA" $MM2_HEAP_OPTS $JVM_PERF_OPTS -XX:+ExitOnOutOfMemoryError \
    -Dlog4j.configuration="file:$LOG4J" -Dmm2.log.file="$LOG_FILE" \
    -cp "$LIBS/*" org.apache.kafka.connect.mirror.MirrorMaker "$CONFIG" \
    >"$LOGS/mirror-maker.out" 2>&1 </dev/null 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  # Until the forked shell has exec'd into java, its cmdline is this script's, not MirrorMaker's.
  sleep 0.2
  while true; do
    if ! pid_is_mm2 "$pid"; then
      print_log_tail
      die "mirror maker (pid $pid) exited during start"
    fi
    started_since "$offset" && break
    if (( SECONDS - t0 >= MM2_START_TIMEOUT_S )); then
      print_log_tail
      die "mirror maker (pid $pid) did not log its start within ${MM2_START_TIMEOUT_S}s (still running; try: $0 stop)"
    fi
    sleep 0.5
  done
  echo "mirror maker started in $((SECONDS - t0))s: pid $pid, $MM2_SOURCE_BOOTSTRAP -> $MM2_TARGET_BOOTSTRAP, topics '$MM2_TOPICS', exactly-once $MM2_EXACTLY_ONCE, config $CONFIG, log $LOG_FILE"
}

cmd_stop() {
  local pid
  lock
  if ! pid="$(mm2_pid)"; then
    rm -f "$PID_FILE"
    echo "mirror maker not running"
    return 0
  fi
  stop_pid "$pid" "$MM2_STOP_TIMEOUT_S" pid_is_mm2 "mirror maker"
  rm -f "$PID_FILE"
  echo "mirror maker stopped (pid $pid)"
}

cmd_kill() {
  local pid
  if ! pid="$(mm2_pid)"; then
    echo "mirror maker not running"
    return 0
  fi
  kill_pid "$pid"
  rm -f "$PID_FILE"
  echo "mirror maker killed (pid $pid)"
}

cmd_status() {
  local pid
  if pid="$(mm2_pid)"; then
    echo "mirror maker running: pid $pid, config $CONFIG, log $LOG_FILE"
    return 0
  fi
  echo "mirror maker not running"
  return 3
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    kill) cmd_kill ;;
    status) cmd_status ;;
    fetch) lock; fetch; echo "mirror maker jars in $LIBS" ;;
    config) render_config ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
