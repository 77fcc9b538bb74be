#!/usr/bin/env bash
# Show that the Edgewise agent installs from its wheel with the offline recipe of docs/deploy.md
# and runs on arm64 (Raspberry Pi OS / Debian 12 on a Pi 4 or 5), on an x86_64 machine: an
# arm64 Debian root made by debootstrap, entered with chroot through qemu-user emulation
# (binfmt_misc). In that root: a virtual environment, `edgewise[agent]` installed with
# `pip install --no-index` from a wheelhouse that `pip download --platform ...` filled here, a
# manifest signed here and verified there, a real prediction through the agent's runtime, and
# the agent's unit tests.
#
# Needs root and: apt-get install debootstrap qemu-user-static binfmt-support
# Cached under ${EDGEWISE_CACHE_DIR:-~/.cache/edgewise}: the arm64 root (roots/bookworm-arm64,
# about 300 MB built once, 260 MB more with its virtual environment) and the arm64 wheels
# (wheels-arm64-cp311, 40 MB), fetched anew on every run. The root's virtual environment is made anew whenever those wheels change (a new release
# of a dependency) or EDGEWISE_ARM64_FRESH_VENV=1; otherwise only this checkout's wheel is
# reinstalled in it, which spares the minutes pip takes under emulation.
#
# Exit status: 0 passed, 1 failed, 77 this kernel cannot run arm64 binaries (no binfmt_misc).
#
#   sudo bash deploy/check-arm64.sh                  # from anywhere
#   EDGEWISE_ARM64_TESTS=quick sudo bash deploy/check-arm64.sh   # a bounded subset (CI)
set -euo pipefail

CACHE="${EDGEWISE_CACHE_DIR:-$HOME/.cache/edgewise}"
ROOT="${EDGEWISE_ARM64_ROOT:-$CACHE/roots/bookworm-arm64}"
WHEELHOUSE="$CACHE/wheels-arm64-cp311"
MIRROR="${EDGEWISE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
# Debian 12's python3 is 3.11; onnxruntime's and numpy's aarch64 wheels are manylinux_2_27/2_28,
# some of their dependencies' (cffi, protobuf) manylinux2014: pip needs both platform tags
PIP_TARGET=(--platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64
            --python-version 3.11 --only-binary=:all:)
case "${EDGEWISE_ARM64_TESTS:-all}" in
  all) TESTS=(tests/unit/edgewise_wire tests/unit/edge_agent tests/unit/edgewise_monitoring
              tests/integration/edge_agent/outbox) ;;
  # bounded for CI (under emulation here 25-50 s, against 12 min for all): what touches native
  # code or the platform (the wire contract's parsing, the update's files, slots and journal,
  # the outbox's SQLite, malloc tuning), without the long property-based and false-alarm runs
  quick) TESTS=(tests/unit/edgewise_wire tests/unit/edge_agent/update
                tests/unit/edge_agent/test_config_example.py
                tests/unit/edge_agent/test_malloc_tuning.py
                tests/unit/edge_agent/test_recent_predictions.py
                tests/integration/edge_agent/outbox) ;;
  *) echo "check-arm64: EDGEWISE_ARM64_TESTS is 'all' or 'quick'" >&2; exit 1 ;;
esac

die() { echo "check-arm64: $*" >&2; exit 1; }
say() { echo "==> [${SECONDS}s] $*"; }  # seconds since the start: where the time goes

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, mount and chroot need it)"
DEBOOTSTRAP="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
[ -x "$DEBOOTSTRAP" ] || die "debootstrap is missing: apt-get install debootstrap"
[ -e /usr/bin/qemu-aarch64-static ] \
  || die "qemu-user-static is missing: apt-get install qemu-user-static binfmt-support"

# binfmt_misc lets the kernel hand arm64 binaries to qemu; containers often lack the mount
if ! grep -qw binfmt_misc /proc/filesystems; then
  echo "check-arm64: skipped: this kernel has no binfmt_misc, so it cannot run arm64 binaries" >&2
  exit 77
fi
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
    || die "cannot mount binfmt_misc (a container without the privilege?): give it CAP_SYS_ADMIN or run on the host"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"
fi

# one run at a time per root: a second waits (two test runs on one machine share the cache)
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  say "debootstrap: Debian 12 arm64 into $ROOT (once; cached)"
  rm -rf "$ROOT.partial"
  "$DEBOOTSTRAP" --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOT.partial" "$MIRROR" >"$ROOT.log" 2>&1 \
    || die "debootstrap failed; its log: $ROOT.log"
  mv "$ROOT.partial" "$ROOT"
fi

PYTHON="$REPO/.venv/bin/python"; [ -x "$PYTHON" ] || PYTHON=python3
WORK="$ROOT/opt/edgewise-check"
# mounts a killed run left behind come off before anything in the root is removed
{ grep -o " $ROOT/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
rm -rf "$WORK"
mkdir -p "$WORK/src/tests" "$WORK/wheel" "$WHEELHOUSE"

say "the Edgewise wheel, built from $REPO"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/wheel" "$REPO"
WHEEL="$(basename "$(ls "$WORK"/wheel/edgewise-*.whl)")"

say "the agent's arm64 wheels, as docs/deploy.md downloads them for an offline Pi"
# pytest and hypothesis run the tests; they are not the agent's
"$PYTHON" -m pip download --quiet --dest "$WHEELHOUSE" "${PIP_TARGET[@]}" \
  "edgewise[agent] @ file://$WORK/wheel/$WHEEL" pytest hypothesis
rm -f "$WHEELHOUSE"/edgewise-*.whl  # this checkout's wheel is never cached

say "the agent's tests"
cp "$REPO/tests/__init__.py" "$WORK/src/tests/"
cp -r "$REPO/tests/harness" "$WORK/src/tests/"
for t in "${TESTS[@]}"; do
  mkdir -p "$WORK/src/$(dirname "$t")"; cp -r "$REPO/$t" "$WORK/src/$t"
  # the package chain above each tier folder
  d=$(dirname "$t"); while [ "$d" != tests ]; do touch "$WORK/src/$d/__init__.py"; d=$(dirname "$d"); done
done
# agent tests only: modules that need the controller or the converters' stack are left out
# (and named), as a device has neither
{ grep -lE "^(from|import) (controller|converters|sqlalchemy|sklearn|cryptography)|tests\.[a-z_.]*controller" \
  -r "$WORK/src/tests" --include='*.py' || true; } | while read -r f; do
  echo "    (not an agent test, left out: ${f#"$WORK"/src/})"; rm "$f"
done
# some tests compare generated docs with the committed ones, or load the example configuration
cp -r "$REPO/docs" "$REPO/deploy" "$WORK/src/"

# a real model for the agent on arm64: iris logistic regression, converted here, its manifest
# signed as the controller signs it (the tests that sign need the controller, so they stay here)
"$PYTHON" - "$WORK" <<'EOF'
import json, sys, time
from pathlib import Path
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from controller.security.signing import generate_keypair, sign_manifest
from converters import convert_sklearn
x, y = load_iris(return_X_y=True)
result = convert_sklearn(LogisticRegression(max_iter=500).fit(x, y), x[:50], name="iris", labels=y[:50])
work = Path(sys.argv[1])
(work / "model.onnx").write_bytes(result.artifact)
private_pem, public_pem, _ = generate_keypair()
envelope = sign_manifest(result.manifest.to_dict(), private_pem, expires_at=time.time() + 86400)
(work / "envelope.json").write_text(json.dumps(envelope))
(work / "signing-key.pub").write_bytes(public_pem)
EOF

MOUNTS=()
cleanup() {
  local i
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { mount "$@"; MOUNTS+=("${*: -1}"); }
bind -t proc proc "$ROOT/proc"
bind --bind /dev "$ROOT/dev"
bind --bind /dev/pts "$ROOT/dev/pts"
# onnxruntime reads the CPUs through cpuinfo, which on Linux/arm64 parses
# /sys/devices/system/cpu/{possible,present} and /proc/cpuinfo. Without them (a bare chroot)
# cpuinfo fails and onnxruntime 1.23 aborts at import; the host's files describe x86 CPUs (and
# made it crash under qemu). So the root gets the files of a Raspberry Pi 4 (Cortex-A72), with
# as many CPUs as this machine has.
CPUS="$(nproc)"
FAKE="$WORK/fake-cpu"
mkdir -p "$FAKE/sys"
for f in possible present online; do echo "0-$((CPUS - 1))" >"$FAKE/sys/$f"; done
echo "$((CPUS - 1))" >"$FAKE/sys/kernel_max"
for ((i = 0; i < CPUS; i++)); do
  mkdir -p "$FAKE/sys/cpu$i/topology" "$FAKE/sys/cpu$i/cpufreq"
  echo 1500000 >"$FAKE/sys/cpu$i/cpufreq/cpuinfo_max_freq"
  echo 0 >"$FAKE/sys/cpu$i/topology/physical_package_id"
  echo "$i" >"$FAKE/sys/cpu$i/topology/core_id"
  echo "0-$((CPUS - 1))" >"$FAKE/sys/cpu$i/topology/core_siblings_list"
  echo "$i" >"$FAKE/sys/cpu$i/topology/thread_siblings_list"
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' \
    "$i" >>"$FAKE/cpuinfo"
done
printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n' >>"$FAKE/cpuinfo"
mkdir -p "$ROOT/sys/devices/system/cpu"
bind --bind "$FAKE/sys" "$ROOT/sys/devices/system/cpu"
bind --bind "$FAKE/cpuinfo" "$ROOT/proc/cpuinfo"
mkdir -p "$ROOT/mnt/wheels"
bind --bind -o ro "$WHEELHOUSE" "$ROOT/mnt/wheels"

say "inside the arm64 root (emulated): venv, the agent from its wheel offline, predict, tests"
# The virtual environment of an earlier run is kept while the arm64 wheels are the same files
# (a new release of a dependency makes a new one); then only this checkout's wheel is installed.
KEY="$(cd "$WHEELHOUSE" && find . -name '*.whl' | sort | sha256sum | cut -c1-16)"
[ "${EDGEWISE_ARM64_FRESH_VENV:-0}" = 1 ] && KEY="fresh-$RANDOM$RANDOM"
# shellcheck disable=SC2016  # the script runs inside the root: expanded there, not here
chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
  PIP_DISABLE_PIP_VERSION_CHECK=1 WHEEL="$WHEEL" KEY="$KEY" /bin/bash -euc '
    cd /opt/edgewise-check
    echo "machine: $(uname -m), $(python3 --version)"
    venv=/opt/edgewise-venv
    if [ "$(cat "$venv/wheelhouse-key" 2>/dev/null)" != "$KEY" ]; then
      echo "    [$(date -u +%T)] a fresh venv; pip install --no-index of the agent and its dependencies"
      rm -rf "$venv"
      python3 -m venv "$venv"
      "$venv/bin/pip" install --quiet --no-index --find-links /mnt/wheels \
        "edgewise[agent] @ file:///opt/edgewise-check/wheel/$WHEEL" pytest hypothesis
      echo "$KEY" >"$venv/wheelhouse-key"
    else
      echo "    [$(date -u +%T)] the venv of an earlier run (same arm64 wheels); pip install --no-index of this checkout"
      "$venv/bin/pip" install --quiet --no-index --no-deps --force-reinstall "wheel/$WHEEL"
      "$venv/bin/pip" check
    fi
    echo "    [$(date -u +%T)] verify a signed manifest, predict"
    "$venv/bin/python" - <<EOF
import json, platform, time
from pathlib import Path
from importlib.metadata import PackageNotFoundError, version
from edge_agent.runtime import load_runtime, prepare_features, smoke_test
from edgewise_wire.envelope import BadSignature, trusted_keys_from, verify_envelope
from edgewise_wire.manifest import Manifest
found = []
for name in ("numpy", "onnxruntime", "paho-mqtt", "pynacl"):
    try:
        found.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        pass
print("arm64 wheels:", platform.machine(), ", ".join(found))
envelope = json.loads(Path("envelope.json").read_text())
trusted = trusted_keys_from([Path("signing-key.pub").read_bytes()])
def verify(envelope):
    return verify_envelope(envelope, trusted, now=time.time(), device_class=None,
                           running_version=None)
manifest = Manifest.from_dict(verify(envelope))
tampered = {**envelope, "manifest": {**envelope["manifest"], "version": 99}}
try:
    verify(tampered)
    raise SystemExit("a tampered manifest passed the signature check")
except BadSignature:
    print("the agent on arm64 accepts the signed manifest and refuses a tampered one")
runtime = load_runtime(Path("model.onnx"), manifest)
smoke_test(runtime)
rows = prepare_features([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], manifest)
labels = [int(v) for v in runtime.run(rows).labels]
assert labels == [0, 2], labels
print("the agent runtime on arm64 predicts", labels, "for two iris rows (expected [0, 2])")
EOF
    echo "    [$(date -u +%T)] the tests"
    cd src && "$venv/bin/python" -m pytest -q -p no:cacheprovider --noconftest --durations=5 tests
'
say "arm64 check passed"
