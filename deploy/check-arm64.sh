#!/usr/bin/env bash
# Show that the Edgewise agent installs and passes its unit tests on arm64 (Raspberry Pi OS /
# Debian 12 on a Pi 4 or 5), on an x86_64 machine: an arm64 Debian root made by debootstrap,
# entered with chroot through qemu-user emulation (binfmt_misc).
#
# Needs root and: apt-get install debootstrap qemu-user-static binfmt-support
# The arm64 root is cached (default /var/cache/edgewise/bookworm-arm64, about 330 MB; building
# it takes ~4 min); the pip downloads are cached in it too. A run then takes several minutes,
# because every Python instruction runs under emulation.
#
# Example: sudo bash deploy/check-arm64.sh            # from the repository's top directory
set -euo pipefail

ROOT="${EDGEWISE_ARM64_ROOT:-/var/cache/edgewise/bookworm-arm64}"
MIRROR="${EDGEWISE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TESTS=(tests/unit/edgewise_wire tests/unit/edge_agent tests/unit/edgewise_monitoring
       tests/integration/edge_agent/outbox)

die() { echo "check-arm64: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
[ -e /usr/bin/qemu-aarch64-static ] || die "qemu-user-static is missing: apt-get install qemu-user-static binfmt-support"

# binfmt_misc lets the kernel hand arm64 binaries to qemu; containers often lack the mount
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
    || die "cannot mount binfmt_misc (a container without the privilege?): arm64 emulation is impossible here"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"
fi

if [ ! -x "$ROOT/usr/bin/python3" ]; then
  echo "==> debootstrap: Debian 12 arm64 into $ROOT (once; cached)"
  rm -rf "$ROOT.partial"
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$ROOT.partial" "$MIRROR"
  mv "$ROOT.partial" "$ROOT"
fi

echo "==> building the Edgewise wheel from $REPO"
WORK="$ROOT/opt/edgewise-check"
rm -rf "$WORK/src" "$WORK/wheel"  # the venv and pip cache stay
mkdir -p "$WORK/src" "$WORK/wheel"
PYTHON="$REPO/.venv/bin/python"; [ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/wheel" "$REPO"
mkdir -p "$WORK/src/tests"
cp "$REPO/tests/__init__.py" "$REPO/tests/conftest.py" "$WORK/src/tests/"
cp -r "$REPO/tests/harness" "$WORK/src/tests/"
for t in "${TESTS[@]}"; do
  mkdir -p "$WORK/src/$(dirname "$t")"; cp -r "$REPO/$t" "$WORK/src/$t"
  # the package chain above each tier folder
  d=$(dirname "$t"); while [ "$d" != tests ]; do touch "$WORK/src/$d/__init__.py"; d=$(dirname "$d"); done
done
# agent tests only: modules that need the controller or the converters' stack are left out
# (and named), as a device has neither
grep -lE "^(from|import) (controller|converters|sqlalchemy|sklearn)|tests\.controller" \
  -r "$WORK/src/tests" --include='*.py' | while read -r f; do
  echo "    (not an agent test, left out: ${f#"$WORK"/src/})"; rm "$f"
done
cp -r "$REPO/docs" "$WORK/src/docs"  # some tests compare generated docs with the committed ones
# a real model to run on arm64: iris logistic regression, converted here to ONNX
"$PYTHON" - "$WORK/model.onnx" <<'EOF'
import sys
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from converters import convert_sklearn
x, y = load_iris(return_X_y=True)
result = convert_sklearn(LogisticRegression(max_iter=500).fit(x, y), x[:50], name="iris", labels=y[:50])
open(sys.argv[1], "wb").write(result.artifact)
EOF
# this machine's CA bundle: pip inside the root must trust what pip outside trusts
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

cleanup() {
  for m in dev/pts dev proc; do umount "$ROOT/$m" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$ROOT/proc"
# no /sys: onnxruntime's cpuinfo then warns "failed to parse ... processors" and goes on; with
# the host's /sys (x86 CPU data) bound in, it crashed under qemu (SIGSEGV) when tried here
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"

echo "==> inside the arm64 root (emulated): venv, agent extras, unit tests"
# shellcheck disable=SC2016  # the script runs inside the root: expanded there, not here
chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
  PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt PIP_CACHE_DIR=/var/cache/pip \
  PIP_DISABLE_PIP_VERSION_CHECK=1 /bin/bash -euc '
    cd /opt/edgewise-check
    echo "machine: $(uname -m), $(python3 --version)"
    [ -x venv/bin/python ] || python3 -m venv venv
    wheel=$(ls wheel/edgewise-*.whl)
    venv/bin/pip install --quiet "edgewise[agent] @ file:///opt/edgewise-check/$wheel" \
      ai-edge-litert pytest hypothesis cryptography
    # the same version number from an earlier run would be kept: this checkout it must be
    venv/bin/pip install --quiet --force-reinstall --no-deps "/opt/edgewise-check/$wheel"
    venv/bin/python - <<EOF
import platform, numpy, onnxruntime, cryptography, paho.mqtt
from ai_edge_litert.interpreter import Interpreter
print("arm64 wheels:", platform.machine(), "numpy", numpy.__version__, "onnxruntime",
      onnxruntime.__version__, "cryptography", cryptography.__version__, "paho-mqtt",
      paho.mqtt.__version__, "ai-edge-litert", Interpreter.__module__)
import numpy as np
session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
labels = session.run(None, {session.get_inputs()[0].name: rows})[0]
assert list(labels) == [0, 2], labels
print("onnxruntime on arm64 predicts", [int(v) for v in labels], "for two iris rows (expected [0, 2])")
EOF
    cd src && ../venv/bin/python -m pytest -q -p no:cacheprovider --noconftest tests
'
echo "==> arm64 check passed"
