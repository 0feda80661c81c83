# Shared by kafka.sh and mirror-maker.sh (sourced, not run): fetching jars from Maven Central into a cache
# folder, and stopping a JVM by its pid. The caller defines log, die, libs_ready and the variables
# POM (the pom.xml), LIBS (jar folder), RUN (its run/ folder) and MARKER ($LIBS/.fetched).

pom_digest() { sha256sum "$POM" | cut -d' ' -f1; }

# Exactly one slf4j 1.7 binding, or slf4j picks one at random (or NOP: no log at all, no "started" line).
check_slf4j_binding() {
  local bindings
  bindings="$(cd "$LIBS" && ls -1 | grep -E '^(slf4j-(reload4j|log4j12|simple|nop|jdk14|jcl)|logback-classic|log4j-slf4j2?-impl)-' || true)"
  [[ "$(printf '%s' "$bindings" | grep -c .)" == 1 ]] ||
    die "expected exactly one slf4j binding in $LIBS, found: ${bindings:-none}"
}

fetch_jars() { # what (for the log line)
  if libs_ready; then
    check_slf4j_binding
    return 0
  fi
  # Several cache dirs may share one jar folder (KAFKA_LIBS_DIR, MM2_LIBS_DIR) and hold other run/
  # locks: one fetch per jar folder (fd 8), and whoever waited finds the jars there.
  exec 8>"$LIBS.fetch-lock"
  flock -w 300 8 || die "could not take $LIBS.fetch-lock within 300 s"
  if ! libs_ready; then
    command -v mvn >/dev/null || die "mvn not found (Maven 3.8+ and Java 17 are needed)"
    log "fetching $1 jars from Maven Central into $LIBS (once) ..."
    rm -rf "$LIBS"
    mkdir -p "$LIBS" "$RUN"
    # Output goes to a file: Maven 3.8's -q still prints stray colour-reset escapes.
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIBS" >"$RUN/fetch.log" 2>&1; then
      cat "$RUN/fetch.log" >&2
      die "mvn dependency:copy-dependencies failed (output above, also in $RUN/fetch.log)"
    fi
    check_slf4j_binding
    pom_digest >"$MARKER"
    log "fetched $(compgen -G "$LIBS/*.jar" | wc -l) jars"
  fi
  exec 8>&-
  check_slf4j_binding
}

stop_pid() { # pid timeout_s is_ours_fn name: SIGTERM, wait up to timeout_s, then SIGKILL
  local pid="$1" timeout_s="$2" is_ours="$3" name="$4" deadline
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout_s))
  while "$is_ours" "$pid" && (( SECONDS < deadline )); do sleep 0.2; done
  if "$is_ours" "$pid"; then
    log "$name pid $pid still alive after ${timeout_s}s: SIGKILL"
    kill_pid "$pid"
  fi
}

kill_pid() { # pid: SIGKILL and wait until it is gone
  kill -KILL "$1" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null; do sleep 0.1; done
}
