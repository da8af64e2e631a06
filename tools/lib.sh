# Shared by tools/bench.sh and tools/soak.sh (sourced, not run). Expects $root and $target set and a
# log() function; sets $svc and $lg.

# Builds the service and tools/loadgen in release mode (unless SKIP_BUILD is set) and checks both exist.
build_binaries() {
  if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building phone-verify (release) into $target"
    (cd "$root" && CARGO_TARGET_DIR=$target cargo build --release --locked)
    log "building tools/loadgen (release) into $target"
    CARGO_TARGET_DIR=$target cargo build --release --locked --manifest-path "$root/tools/loadgen/Cargo.toml"
  fi
  svc=$target/release/phone-verify
  lg=$target/release/loadgen
  [[ -x $svc && -x $lg ]] || { echo "missing $svc or $lg" >&2; exit 1; }
}

# Prints what the numbers depend on: machine, commit, Postgres (when asked for) and the given knobs.
describe_machine() { # WITH_POSTGRES(0|1) KNOBS
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git: $(git -C "$root" rev-parse --short HEAD) ($(git -C "$root" rev-parse --abbrev-ref HEAD))$(git -C "$root" diff --quiet HEAD -- src || echo ', src/ has uncommitted changes')"
  echo "nproc: $(nproc)"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
  echo "kernel: $(uname -r)"
  if [[ $1 == 1 ]]; then
    echo "postgres: $(psql -Atqc 'select version()' -d postgres)"
    echo "postgres settings: $(psql -Atqc "select string_agg(name || '=' || setting, ' ') from pg_settings where name in ('max_connections','shared_buffers','synchronous_commit','fsync','wal_sync_method','commit_delay','ssl')" -d postgres)"
  fi
  echo "rustc: $(rustc --version)"
  echo "knobs: $2"
}
