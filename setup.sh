#!/usr/bin/env bash
# One way to install, used by the README, CI and the Vagrant VM.
#   sudo ./setup.sh run    install everything, then run the flagship scenario
#   sudo ./setup.sh test   install everything, then run the whole test suite
#   sudo ./setup.sh install  install only (the Vagrant VM's provisioning)
#   sudo ./setup.sh vmtest   install everything, then the stock-kernel lane: netem's
#                            tests inside Debian's stock kernel under qemu (tests/vm/run.sh)
# Installs Debian/Ubuntu packages (apt-get) and a virtualenv at .venv with the
# testbed in it. Run as root (users prefix sudo; nothing here calls sudo).
set -euo pipefail
cd "$(dirname "$0")"
repo="$(pwd)"
mode="${1:-run}"
shift || true

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo ./setup.sh $mode)" >&2
  exit 3
fi

packages=(mininet iperf3 iputils-ping iptables bridge-utils iproute2 ethtool tcpdump
          libnetfilter-queue-dev libnfnetlink-dev gcc python3-dev python3-venv kmod procps
          openssh-server openssh-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The userspace delay line needs bridged frames to reach iptables.
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
extras="test"
# The test suite also cross-checks collectives with torch's gloo; skip that
# heavy extra with TESTBED_SKIP_GLOO=1 (e.g. where torch would be downloaded).
[ "$mode" = "test" ] && [ "${TESTBED_SKIP_GLOO:-0}" != "1" ] && extras="test,gloo"
# editable: the checkout is the installed package (tests run helper processes
# from it), and the C engine is built in place
.venv/bin/python -m pip install -q -e ".[$extras]"
# The C delay-line engine is optional for users (no compiler: the Python line
# runs), but this script installs gcc, so a missing build here is a bug.
if ! (cd / && "$repo/.venv/bin/python" -c "import testbed.delayline._fastline") 2>/dev/null; then
  echo "setup.sh: the C delay-line engine did not build; the slower Python line will be used" >&2
  [ "${CI:-}" = "true" ] && exit 1
fi

case "$mode" in
  install)
    echo "setup.sh: installed; run the flagship with: sudo .venv/bin/testbed run"
    ;;
  run)
    exec .venv/bin/testbed run "$@"
    ;;
  test)
    .venv/bin/testbed doctor || true
    # -p no:cacheprovider: CI's checkout stays clean; --strict-markers: typos fail
    set +e
    .venv/bin/python -m pytest -p no:cacheprovider --strict-markers -ra "$@" tests
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then
      echo "setup.sh: pytest collected no tests: that is a failure" >&2
      exit 1
    fi
    exit "$rc"
    ;;
  vmtest)
    exec tests/vm/run.sh "$@"
    ;;
  *)
    echo "usage: sudo ./setup.sh run|test|vmtest|install [ARGS...]" >&2
    exit 2
    ;;
esac
