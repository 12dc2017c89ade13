#!/usr/bin/env bash
# A real Kubernetes v1.20 control plane on loopback for the tests marked `kubernetes`
# and for tests/bench/bench_kubernetes.py, from ../shared/k8s-harness.
#
#   eval "$(tests/kubernetes_harness.sh up)"    # build (cached), start, export variables
#   python -m pytest -m kubernetes              # runs against it
#   tests/kubernetes_harness.sh down            # stop it and remove its state directory
#
#   eval "$(tests/kubernetes_harness.sh up 2)"  # a second one beside it (multi-target
#                                               # tests): exports ..._2 variables
#   tests/kubernetes_harness.sh down "$PODWARDEN_K8S_STATE_2"
#
# `up` prints only `export ...` lines on stdout (PODWARDEN_TEST_KUBECONFIG and
# PODWARDEN_K8S_STATE); everything else goes to stderr. It picks free ports, so it can run
# beside another harness (a benchmark, a second checkout). When the harness cannot be built
# or started it says so LOUDLY on stderr and exits 3: the tests marked `kubernetes` are then
# skipped, which a CI log must not hide.
#
# Environment: K8S_HARNESS_DIR (default: ../shared/k8s-harness next to the repository),
# K8S_HARNESS_HOME (build cache, default ~/.cache/k8s-harness), PODWARDEN_K8S_STATE
# (the state directory `down` stops; `up` creates a fresh one under $TMPDIR).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
harness="${K8S_HARNESS_DIR:-$repo/../shared/k8s-harness}"
logs="${TMPDIR:-/tmp}"

say() { echo "[kubernetes_harness] $*" >&2; }

loud() {
  local bar="!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  {
    echo "$bar"
    for line in "$@"; do echo "!!! $line"; done
    echo "$bar"
  } >&2
}

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

up() {
  # An optional suffix (`up 2`) names the exported variables PODWARDEN_K8S_STATE_2 and
  # PODWARDEN_TEST_KUBECONFIG_2, for a second control plane beside the first.
  local suffix="${1:-}"
  case "$suffix" in
    ""|[0-9]) ;;
    *) echo "usage: $0 up [DIGIT]" >&2; exit 2 ;;
  esac
  local var="${suffix:+_$suffix}"
  if [ ! -x "$harness/build" ] || [ ! -x "$harness/k8s-up" ]; then
    loud "k8s harness not found at $harness (set K8S_HARNESS_DIR)" \
         "tests marked 'kubernetes' will be SKIPPED"
    exit 3
  fi
  local build_log="$logs/podwarden-k8s-build.log"
  say "building the control plane (cached after the first time; log: $build_log)"
  if ! "$harness/build" >"$build_log" 2>&1; then
    tail -20 "$build_log" >&2 || true
    loud "the k8s harness could NOT be built (log: $build_log)" \
         "tests marked 'kubernetes' will be SKIPPED"
    exit 3
  fi
  local state
  state="$(mktemp -d "$logs/podwarden-k8s.XXXXXX")"
  local ports
  read -r -a ports <<<"$(free_ports 6)"
  # Pods get IPs from a /24 of 127/8 of their own, so two instances (a second checkout, a
  # benchmark, a second cluster) never serve two pods on one address and port.
  local pod_range="${K8S_POD_IP_RANGE:-127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).0/24}"
  local up_log="$state/up.log"
  say "starting it in $state (apiserver on 127.0.0.1:${ports[2]}, pods in $pod_range)"
  if ! K8S_ETCD_CLIENT_PORT="${ports[0]}" K8S_ETCD_PEER_PORT="${ports[1]}" \
       K8S_APISERVER_PORT="${ports[2]}" K8S_KCM_PORT="${ports[3]}" \
       K8S_SCHED_PORT="${ports[4]}" K8S_KUBELET_PORT="${ports[5]}" \
       K8S_POD_IP_RANGE="$pod_range" \
       "$harness/k8s-up" "$state" >"$up_log" 2>&1; then
    tail -20 "$up_log" >&2 || true
    "$harness/k8s-down" "$state" >/dev/null 2>&1 || true
    loud "the k8s harness did NOT start (log: $up_log)" \
         "tests marked 'kubernetes' will be SKIPPED"
    exit 3
  fi
  say "up: tests marked 'kubernetes' run against it"
  echo "export PODWARDEN_K8S_STATE$var='$state'"
  echo "export PODWARDEN_TEST_KUBECONFIG$var='$state/admin.kubeconfig'"
}

down() {
  local state="${1:-${PODWARDEN_K8S_STATE:-}}"
  if [ -z "$state" ]; then
    say "down: no state directory given (argument or PODWARDEN_K8S_STATE)"
    exit 2
  fi
  if [ -d "$state" ]; then
    K8S_WIPE=1 "$harness/k8s-down" "$state" >&2 || true
    rm -rf "$state"
  fi
  say "down: $state removed"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  *)
    echo "usage: $0 up [DIGIT] | down [STATE_DIR]" >&2
    exit 2
    ;;
esac
