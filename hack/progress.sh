# progress.sh is sourced by the build scripts (envtest-assets.sh, capi-managers.sh): it says on
# stderr what is being built, how long that usually takes, how far it got, and whom it waits for
# when another process holds the cache's lock. Cold builds take many minutes on two cores and a
# silent terminal looks hung; stdout stays reserved for the directory the scripts print.
#
# PROGRESS_INTERVAL (seconds, default 30) is how often a line is printed while building or waiting.

progress_interval=${PROGRESS_INTERVAL:-30}

# elapsed START: the time since START (a $SECONDS value) as 1m05s.
elapsed() {
  local s=$((SECONDS - $1))
  if ((s >= 60)); then
    printf '%dm%02ds' $((s / 60)) $((s % 60))
  else
    printf '%ds' "$s"
  fi
}

# process_name PID: the command line of a process, for messages.
process_name() {
  local cmd
  cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || true
  if [[ -z "$cmd" ]]; then
    cmd=$(ps -o args= -p "$1" 2>/dev/null) || true
  fi
  printf '%s' "${cmd% }"
}

# lock_cache TAG LOCKFILE WHAT: takes the exclusive lock LOCKFILE on file descriptor 9 (held until
# the script exits). When another process holds it, says which one, since when and what it builds,
# and repeats every progress_interval seconds while waiting. The holder is recorded in
# LOCKFILE.owner once the lock is taken.
lock_cache() {
  local tag=$1 lock=$2 what=$3
  exec 9>"$lock"
  if ! flock -n 9; then
    local holder="another process" since="" pid="" start=$SECONDS
    if [[ -r "$lock.owner" ]]; then
      { read -r pid; read -r since; } <"$lock.owner" || true
      if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        holder="process $pid ($(process_name "$pid"))"
      else
        since=""
      fi
    fi
    echo "$tag: waiting for the lock $lock: $holder${since:+ holds it since $since}, building $what; this continues with its result when it is done" >&2
    until flock -w "$progress_interval" 9; do
      echo "$tag: still waiting for $holder to finish building $what ($(elapsed "$start") so far)" >&2
    done
    echo "$tag: got the lock after $(elapsed "$start")" >&2
  fi
  printf '%s\n%s\n' "$$" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" >"$lock.owner"
}

# build_with_progress TAG WHAT DIR USUAL CMD...: runs CMD (a go build -v into DIR), printing every
# progress_interval seconds how long it has run, how many modules were downloaded and packages
# compiled so far, and how long it usually takes. CMD's stderr is shown only when it fails.
build_with_progress() {
  local tag=$1 what=$2 dir=$3 usual=$4
  shift 4
  local log rc=0 start=$SECONDS next
  log=$(mktemp)
  echo "$tag: building $what into $dir, once: usually $usual (a line every ${progress_interval}s)" >&2
  "$@" 2>"$log" &
  local pid=$!
  next=$((SECONDS + progress_interval))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if ((SECONDS >= next)); then
      local mods pkgs
      mods=$(grep -c '^go: downloading ' "$log") || true
      pkgs=$(grep -vc -e '^go: ' -e '^#' "$log") || true
      echo "$tag: still building $what: $(elapsed "$start"), $mods modules downloaded, $pkgs packages compiled (usually $usual)" >&2
      next=$((next + progress_interval))
    fi
  done
  wait "$pid" || rc=$?
  if ((rc != 0)); then
    grep -v -e '^go: downloading ' "$log" >&2 || true
    echo "$tag: building $what failed after $(elapsed "$start")" >&2
  else
    echo "$tag: built $what in $(elapsed "$start")" >&2
  fi
  rm -f "$log"
  return "$rc"
}
