#!/usr/bin/env bash
# Install the Edgewise agent on Raspberry Pi OS / Debian, 64-bit (arm64 or amd64; not armhf:
# onnxruntime and numpy publish no 32-bit ARM wheels):
# a system user, a Python virtual environment with the agent extras, the device's enrollment
# bundle in /etc/edgewise, and the systemd service, enabled (and started when systemd runs).
#
# Usage: sudo bash install-agent.sh --bundle pi-01.tar.gz --package edgewise-0.1.0-py3-none-any.whl
#
#   --bundle PATH     the device's bundle from `edgewise devices enroll` (.tar.gz or directory)
#   --package SPEC    the Edgewise wheel file, or a pip requirement (default: the only
#                     edgewise-*.whl beside this script)
#   --pip-args ARGS   extra pip arguments, e.g. "--no-index --find-links /media/wheels"
#   --prefix DIR      virtual environment (default /opt/edgewise-agent)
#   --unit FILE       systemd unit (default: systemd/edgewise-agent.service beside this script)
#   --no-apt          do not apt-get install python3-venv
#   --no-start        enable the service but do not start it
#
# Run it again to upgrade the agent or replace the bundle; the agent's state is kept.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=/opt/edgewise-agent
CONF_DIR=/etc/edgewise
STATE_DIR=/var/lib/edgewise-agent
SERVICE_USER=edgewise-agent
UNIT_NAME=edgewise-agent.service
BUNDLE=""
PACKAGE=""
PIP_ARGS=""
UNIT="$HERE/systemd/$UNIT_NAME"
APT=1
START=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'install-agent: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE="${2:?--bundle needs a path}"; shift 2 ;;
    --package) PACKAGE="${2:?--package needs a wheel or requirement}"; shift 2 ;;
    --pip-args) PIP_ARGS="${2:-}"; shift 2 ;;
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --unit) UNIT="${2:?--unit needs a file}"; shift 2 ;;
    --no-apt) APT=0; shift ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo bash $0 ...)"
[ -n "$BUNDLE" ] || die "--bundle is required: make one with \`edgewise devices enroll DEVICE_ID\` on the controller"
[ -e "$BUNDLE" ] || die "bundle $BUNDLE does not exist"
[ -f "$UNIT" ] || die "systemd unit $UNIT not found (pass --unit)"
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*|*" raspbian "*) ;;
    *) die "this script is for Debian and Raspberry Pi OS, not ${PRETTY_NAME:-this system}" ;;
  esac
fi
case "$(uname -m)" in
  aarch64|x86_64) ;;
  armv6l|armv7l|armv8l)
    die "this is a 32-bit ARM system ($(uname -m)): onnxruntime and numpy publish no wheels for it; install the 64-bit Raspberry Pi OS (arm64) on a Pi 3, 4 or 5" ;;
  *) die "unsupported machine $(uname -m): the agent runs on aarch64 (arm64) and x86_64" ;;
esac

if [ -z "$PACKAGE" ]; then
  shopt -s nullglob
  wheels=("$HERE"/edgewise-*.whl)
  shopt -u nullglob
  [ "${#wheels[@]}" -eq 1 ] || die "pass --package: the Edgewise wheel (build it with \`pip wheel --no-deps .\` in the source tree) or a pip requirement"
  PACKAGE="${wheels[0]}"
fi
if [ -f "$PACKAGE" ]; then
  REQUIREMENT="edgewise[agent] @ file://$(cd "$(dirname "$PACKAGE")" && pwd)/$(basename "$PACKAGE")"
else
  REQUIREMENT="$PACKAGE"
fi

# -- the bundle: unpack first, so nothing is installed from a bundle that is not one ----------
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [ -d "$BUNDLE" ]; then
  cp -r "$BUNDLE/." "$WORK/bundle"
else
  mkdir "$WORK/unpacked"
  tar -xzf "$BUNDLE" -C "$WORK/unpacked" --no-same-owner
  top=("$WORK"/unpacked/*)
  if [ "${#top[@]}" -ne 1 ] || [ ! -d "${top[0]}" ]; then
    die "$BUNDLE should hold one directory (DEVICE_ID/)"
  fi
  mv "${top[0]}" "$WORK/bundle"
fi
[ -f "$WORK/bundle/agent.toml" ] || die "$BUNDLE has no agent.toml: is it an enrollment bundle?"

# -- packages, user, virtual environment -----------------------------------------------------
if [ "$APT" -eq 1 ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  say "installing python3 and python3-venv"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi
command -v python3 >/dev/null || die "python3 is missing (apt-get install python3 python3-venv)"

if ! getent passwd "$SERVICE_USER" >/dev/null; then
  say "creating system user $SERVICE_USER"
  useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "Edgewise agent" "$SERVICE_USER"
fi

say "virtual environment $PREFIX with $REQUIREMENT"
[ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
# shellcheck disable=SC2086  # PIP_ARGS is a list of words by design
"$PREFIX/bin/pip" install --quiet --disable-pip-version-check $PIP_ARGS "$REQUIREMENT"
"$PREFIX/bin/edgewise-agent" --help >/dev/null || die "the agent does not start: $PREFIX/bin/edgewise-agent --help failed"

# -- configuration: root owns it, the agent may only read it ---------------------------------
say "configuration in $CONF_DIR"
install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
find "$WORK/bundle" -type d -exec chmod 0750 {} + -o -type f -exec chmod 0640 {} +
chown -R root:"$SERVICE_USER" "$WORK/bundle"
cp -a "$WORK/bundle/." "$CONF_DIR/"
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
if command -v runuser >/dev/null; then
  runuser -u "$SERVICE_USER" -- "$PREFIX/bin/python" -c \
    'import sys; from pathlib import Path; from edge_agent.config import load_config; c = load_config(Path(sys.argv[1])); print("    device", c.device_id, "broker", c.broker)' \
    "$CONF_DIR/agent.toml" || die "$CONF_DIR/agent.toml does not load as the $SERVICE_USER user"
fi

# -- systemd ---------------------------------------------------------------------------------
say "systemd unit $UNIT_NAME"
sed "s#/opt/edgewise-agent/bin/edgewise-agent#$PREFIX/bin/edgewise-agent#" "$UNIT" \
  > "/etc/systemd/system/$UNIT_NAME"
chmod 0644 "/etc/systemd/system/$UNIT_NAME"
if ! command -v systemctl >/dev/null; then
  say "systemctl not found: start $PREFIX/bin/edgewise-agent --config $CONF_DIR/agent.toml yourself"
  exit 0
fi
systemctl enable "$UNIT_NAME" 2>&1 | sed 's/^/    /'
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$START" -eq 1 ]; then
    systemctl restart "$UNIT_NAME"
    say "started; follow it with: journalctl -u $UNIT_NAME -f"
  fi
else
  say "systemd is not running here (a chroot or container): enabled, starts at the next boot"
fi
say "done"
