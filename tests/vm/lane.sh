#!/usr/bin/env bash
# The stock-kernel lane, inside the VM that `./setup.sh vmtest` boots (Debian's
# stock kernel, which has netem, over this checkout). Not meant to run on the host.
#   tests/vm/lane.sh OUT_DIR [PYTEST ARGS...]
# OUT_DIR is the one directory the VM may write on the host: the JUnit file and
# pytest's exit code ("rc") go there. The checkout itself is read-only in the VM;
# /tmp, /run and /var are the VM's own (overlays or tmpfs).
set -u
out="$1"
shift
cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1   # the checkout is read-only here
export TESTBED_TEST_BACKEND=netem
echo 1 > "$out/started"

for module in sch_netem sch_htb br_netfilter nfnetlink_queue tcp_bbr; do
  modprobe "$module" || echo "vmtest: modprobe $module failed" >&2
done
echo "vmtest: guest kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
.venv/bin/testbed doctor | sed -n '1,2p'

# Every netem-marked test; the delay, shaping, lifecycle and events integration
# tests with the netem backend (the ones about the NFQUEUE line itself, marked
# `userspace`, are left to the host's suite); the flagship `testbed run --quick`,
# whose tests check it ran on netem. Nothing may skip: --fail-on-skip.
# Left out, by name: the TCP goodput of rate-only links. Those links are htb
# alone in both backends (the test asserts no netem and no delay line on them),
# so the host's suite judges them; a VM without KVM carries only 50-900 Mbit/s
# of TCP (measured), which says nothing about htb's accuracy at 100 Mbit-5 Gbit.
netem_files=$(grep -rl --include='test_*.py' 'pytest.mark.netem' tests | sort)
.venv/bin/python -m pytest -p no:cacheprovider --strict-markers -ra \
  --backend netem --fail-on-skip -m "netem or not userspace" \
  --junitxml "$out/junit.xml" \
  --deselect tests/integration/test_shaping_accuracy.py::test_tcp_goodput_matches_rate \
  $netem_files \
  tests/integration/test_delayline_accuracy.py \
  tests/integration/test_shaping_accuracy.py \
  tests/integration/test_lab_lifecycle.py \
  tests/integration/test_events_live.py \
  tests/e2e/test_flagship.py \
  "$@"
echo $? > "$out/rc"
