#!/usr/bin/env bash
# The stock-kernel lane on the host: `sudo ./setup.sh vmtest` runs this after
# installing the testbed. It fetches Debian's stock kernel (the linux-image-amd64
# package, unpacked into .vmcache/ of the checkout, never installed into /boot),
# boots it under qemu over this checkout with virtme-ng, and runs tests/vm/lane.sh
# inside. Exit code: pytest's inside the VM; 1 if the VM never ran it.
#   TESTBED_VM_ACCEL=auto|kvm|tcg   (default auto: KVM if a bounded probe boots, else TCG)
#   TESTBED_VM_MEMORY=3G  TESTBED_VM_CPUS=2  TESTBED_VM_TIMEOUT_S=2400
#   TESTBED_VM_GUEST=SCRIPT   run SCRIPT OUT_DIR instead of the lane (it writes OUT_DIR/rc),
#                             e.g. benchmarks/parity_guest.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
cache="$repo/.vmcache"
export DEBIAN_FRONTEND=noninteractive

say() { echo "vmtest: $*"; }

# -- host packages: qemu (with its virtiofsd) and a static busybox for virtme-ng's initramfs
missing=()
for p in qemu-system-x86 busybox-static; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
.venv/bin/python -m pip install -q "virtme-ng==1.42"
export PATH="$repo/.venv/bin:$PATH"   # vng calls virtme-run from the venv

# -- the stock kernel: whatever linux-image-amd64 depends on, downloaded and unpacked here
mkdir -p "$cache"
image_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
pkg="$(image_pkg || true)"
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg="$(image_pkg)"
fi
root="$cache/$pkg"
kernel="$(ls "$root"/boot/vmlinuz-* 2>/dev/null | head -n1 || true)"
if [ -z "$kernel" ]; then
  say "downloading $pkg (Debian's stock kernel) into $cache"
  rm -rf "$root" "$cache"/*.deb
  (cd "$cache" && apt-get download -q "$pkg" 2>&1 | grep -v "unsandboxed" || true)
  deb="$(ls "$cache"/"$pkg"_*.deb | head -n1)"
  dpkg-deb -x "$deb" "$root.partial"
  mv "$root.partial" "$root"
  rm -f "$deb"
  kernel="$(ls "$root"/boot/vmlinuz-* | head -n1)"
fi

# -- KVM where it actually boots (a bounded probe), TCG otherwise
memory="${TESTBED_VM_MEMORY:-3G}"
cpus="${TESTBED_VM_CPUS:-2}"
# 9p straight away: Debian's virtiofsd refuses virtme-ng's socket path here anyway
vng_base=(vng -v --force-9p --run "$kernel" --cpus "$cpus" --memory "$memory" --append "quiet loglevel=1")
accel="${TESTBED_VM_ACCEL:-auto}"
why=""
if [ "$accel" = "auto" ]; then
  if [ ! -w /dev/kvm ]; then
    accel=tcg why="no writable /dev/kvm"
  elif timeout 45 "${vng_base[@]}" --exec "echo vmtest-kvm-ok" </dev/null 2>&1 | tr -d '\r' \
       | grep -q "^vmtest-kvm-ok"; then
    accel=kvm why="a KVM guest booted within 45 s"
  else
    accel=tcg why="a KVM guest did not boot: qemu failed or printed nothing in 45 s"
  fi
fi
accel_args=()
[ "$accel" = "tcg" ] && accel_args=(--disable-kvm)
say "booting $(basename "$kernel") with ${accel^^}${why:+ ($why)}, $cpus CPUs, $memory"

# -- the lane: the guest writes its exit code into a directory it may write
out="$cache/out"
rm -rf "$out"
mkdir -p "$out"
# Kernel and init messages (lines "[  12.345678] ...") are dropped from the console;
# what is left is the lane's own output, ending with pytest's summary.
set +e
timeout "${TESTBED_VM_TIMEOUT_S:-2400}" "${vng_base[@]}" "${accel_args[@]}" --rwdir "$out" \
  --exec "${TESTBED_VM_GUEST:-tests/vm/lane.sh} $out $*" </dev/null 2>&1 \
  | LC_ALL=C sed -u -e 's/[\r\x00]//g' -e '/^\[ *[0-9]*\.[0-9]*\]/d' -e '/^Probing EDD/d' \
      -e '/^virtme/d' -e '/^Memory KASLR/d' -e '/^Poking KASLR/d' -e '/^$/d'
vm_rc=${PIPESTATUS[0]}
set -e
if [ ! -s "$out/rc" ]; then
  if [ -e "$out/started" ]; then
    echo "vmtest: the VM stopped before the lane finished (vng exit $vm_rc)" >&2
  else
    echo "vmtest: the VM never started the lane (vng exit $vm_rc)" >&2
  fi
  exit 1
fi
rc="$(cat "$out/rc")"
[ "$rc" -eq 5 ] && rc=1   # no tests collected is a failure
exit "$rc"
