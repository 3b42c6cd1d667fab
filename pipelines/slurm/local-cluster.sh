#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# A one-node Slurm cluster on this machine, without systemd: for the tests and for trying the
# Slurm scripts before submitting to a real cluster. Everything (munge key and socket,
# slurm.conf, state, spool, logs, pid files) lives in STATE_DIR; nothing under /etc is used.
#
# Usage: pipelines/slurm/local-cluster.sh start|stop|status STATE_DIR
#   start   (re)starts munged, slurmctld and slurmd, waits for the node to be idle and prints
#           the line to export (SLURM_CONF=STATE_DIR/slurm.conf); a running, healthy cluster is
#           left as it is (stop it first to change its settings), stale daemons of an earlier
#           run are stopped first
#   stop    cancels the cluster's jobs and stops its daemons (by their pid files)
#   status  prints the daemons' state and `sinfo`; exit status 1 when the node is not up
# Environment: SLURMCTLD_PORT (6817), SLURMD_PORT (6818): change them when a real Slurm runs
# here; LOCAL_SLURM_CPUS, LOCAL_SLURM_MEMORY_MB override the detected CPU count and memory;
# REQUEUE_DELAY (5, the least Slurm accepts): seconds a requeued job waits before it may start
# again (AuthInfo cred_expire; Slurm's default is 120).
# Needs the Debian packages slurmctld, slurmd, slurm-client and munge (or slurm-wlm), and root
# (the daemons run as root; jobs may be submitted by any user).
set -euo pipefail

usage() { sed -n '7,20p' "$0" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD=$1
mkdir -p "$2"
STATE=$(cd "$2" && pwd)
CONF=$STATE/slurm.conf
MUNGE_DIR=$STATE/munge
SOCKET=$MUNGE_DIR/munge.socket.2
NODE=$(hostname -s 2>/dev/null || echo localhost)
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
REQUEUE_DELAY=${REQUEUE_DELAY:-5}
export SLURM_CONF=$CONF
[[ "$REQUEUE_DELAY" =~ ^[0-9]+$ ]] && [ "$REQUEUE_DELAY" -ge 5 ] ||
  { echo "local-cluster: REQUEUE_DELAY must be 5 or more (seconds)" >&2; exit 2; }

say() { printf 'local-cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The pid in FILE when that process is alive and is NAME (so a reused pid is not signalled).
live_pid() {
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && alive "$pid" || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  echo "$pid"
}

# Whether process PID runs (a zombie left unreaped by a container's init does not).
alive() {
  local st
  st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# SIGTERM to the PIDs, SIGKILL to those still running 10 s later.
stop_pids() {
  local pid i left
  kill -TERM "$@" 2>/dev/null || true
  for i in $(seq 50); do
    left=()
    for pid in "$@"; do alive "$pid" && left+=("$pid"); done
    [ ${#left[@]} -eq 0 ] && return 0
    sleep 0.2
  done
  kill -KILL "${left[@]}" 2>/dev/null || true
}

descendants() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null || true); do
    descendants "$c"
    echo "$c"
  done
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }

# Whether the slurmd started at or after epoch second $1 has registered with the controller
# (a restarted controller reports the node's saved state before that).
registered_since() {
  local t
  t=$(scontrol show node "$NODE" 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
  [ -n "$t" ] && [ "$t" != None ] && [ "$(date -d "$t" +%s 2>/dev/null || echo 0)" -ge "$1" ]
}

cluster_up() {
  live_pid "$STATE/munged.pid" munged >/dev/null &&
    live_pid "$STATE/slurmctld.pid" slurmctld >/dev/null &&
    live_pid "$STATE/slurmd.pid" slurmd >/dev/null &&
    case "$(node_state)" in idle | mix | alloc | comp) true ;; *) false ;; esac
}

stop() {
  local pid job
  if live_pid "$STATE/slurmctld.pid" slurmctld >/dev/null; then
    for job in $(squeue -h -o %A 2>/dev/null); do scancel "$job" 2>/dev/null || true; done
    for _ in $(seq 25); do
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.4
    done
  fi
  # Job steps left by a killed slurmd: the slurmstepd processes holding this cluster's log,
  # and the job processes under them.
  local steps=() tasks=()
  for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    if ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF "$STATE/log/"; then
      steps+=("$pid")
      # shellcheck disable=SC2207  # one pid a word
      tasks+=($(descendants "$pid"))
    fi
  done
  [ ${#tasks[@]} -gt 0 ] && stop_pids "${tasks[@]}"
  # slurmstepd ignores SIGTERM.
  [ ${#steps[@]} -gt 0 ] && kill -KILL "${steps[@]}" 2>/dev/null
  for d in slurmd slurmctld munged; do
    if pid=$(live_pid "$STATE/$d.pid" "$d"); then
      say "stopping $d ($pid)"
      stop_pids "$pid"
    fi
    rm -f "$STATE/$d.pid"
  done
  rm -f "$SOCKET" "$SOCKET.lock"
}

write_conf() {
  local cpus mem
  cpus=${LOCAL_SLURM_CPUS:-$(nproc)}
  mem=${LOCAL_SLURM_MEMORY_MB:-$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)}
  cat >"$CONF" <<EOF
# One-node cluster written by pipelines/slurm/local-cluster.sh (rewritten on each start).
ClusterName=affect-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$SOCKET,cred_expire=$REQUEUE_DELAY
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no systemd: processes are tracked through their parents.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# No accounting (no slurmdbd): sacct is unavailable, use squeue and scontrol show job.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# CPUs are the unit: several one-CPU array tasks run at once.
SchedulerType=sched/backfill
# Pending jobs are looked at every 2 s (defaults: 60 s, backfill 30 s), so a requeued task
# starts again as soon as it is eligible, whether or not another job ends meanwhile.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
# Completed jobs stay visible to scontrol show job for 10 minutes.
MinJobAge=600
KillWait=10
InactiveLimit=0
MailProg=/bin/true
# The node as configured here, whatever the hardware probe of a container finds.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  local i st
  for c in munged mungekey slurmctld slurmd sinfo scontrol; do
    command -v "$c" >/dev/null 2>&1 || die "$c is not installed (apt-get install slurm-wlm munge)"
  done
  [ "$(id -u)" -eq 0 ] || die "start needs root (the daemons run as root)"
  if [ -f "$CONF" ] && cluster_up; then
    say "already running"
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  stop
  local since=$(($(date +%s) - 1))
  mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log" "$MUNGE_DIR"
  # Clients reach the socket through the folder (x for all); the key stays private.
  chmod 711 "$MUNGE_DIR"
  if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    mungekey --create --keyfile="$MUNGE_DIR/munge.key"
  fi
  chmod 600 "$MUNGE_DIR/munge.key"
  # --force: munged refuses to run as root, and to use a folder below a world-writable /tmp.
  munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$SOCKET" \
    --pid-file="$STATE/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed" ||
    die "munged did not start (see $STATE/log/munged.log)"
  write_conf
  slurmctld -f "$CONF" || die "slurmctld did not start (see $STATE/log/slurmctld.log)"
  slurmd -f "$CONF" -N "$NODE" || die "slurmd did not start (see $STATE/log/slurmd.log)"
  for i in $(seq 120); do
    st=$(node_state || true)
    case "$st" in
      idle | mix | alloc) registered_since "$since" && break ;;
      # A node left down or drained by an earlier run comes back.
      down* | drain* | drng*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  case "$st" in
    idle | mix | alloc) registered_since "$since" || die "slurmd on $NODE did not register (see $STATE/log/)" ;;
    *) die "node $NODE is '${st:-unknown}' after 60 s (see $STATE/log/)" ;;
  esac
  say "node $NODE is $st ($(awk '/^NodeName/' "$CONF"))"
  echo "export SLURM_CONF=$CONF"
}

status() {
  local d pid rc=0
  for d in munged slurmctld slurmd; do
    if pid=$(live_pid "$STATE/$d.pid" "$d"); then echo "$d: running ($pid)"; else echo "$d: stopped"; rc=1; fi
  done
  if [ $rc -eq 0 ]; then sinfo || rc=1; fi
  cluster_up || rc=1
  echo "export SLURM_CONF=$CONF"
  return $rc
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
