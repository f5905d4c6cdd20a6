#!/usr/bin/env bash
# Lockstep's entry points on a fresh Debian machine (run as root):
#   ./run.sh test    install what the suite needs, then lint, format-check and run every test
# Each sub-command installs its own dependencies (apt packages, a virtualenv in .venv) first,
# and skips the parts that are already in place.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${LOCKSTEP_VENV:-$ROOT/.venv}

APT_BASE=(python3 python3-venv python3-dev gcc)
# Integration tests: a private Open vSwitch (userspace datapath), namespaces, veths.
APT_TEST=(openvswitch-switch ethtool iproute2 procps)

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

venv_install() {
    # Debian's interpreter on purpose: it is the one every user has, and the one Mininet runs under.
    if [[ ! -x $VENV/bin/python ]]; then
        log "creating virtualenv $VENV"
        /usr/bin/python3 -m venv "$VENV"
    fi
    local stamp=$VENV/.lockstep-installed want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
        log "installing lockstep and its test tools into $VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q -e ".[test]"
        echo "$want" >"$stamp"
    fi
}

cmd_test() {
    apt_install "${APT_BASE[@]}" "${APT_TEST[@]}"
    venv_install
    log "ruff format --check"
    "$VENV/bin/ruff" format --check .
    log "ruff check"
    "$VENV/bin/ruff" check .
    log "pytest"
    "$VENV/bin/python" -m pytest "$@"
}

case ${1:-} in
    test) shift; cmd_test "$@" ;;
    *)
        echo "usage: $0 test [pytest args...]" >&2
        exit 2
        ;;
esac
