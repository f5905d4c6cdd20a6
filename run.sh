#!/usr/bin/env bash
# Lockstep's entry points on a fresh Debian machine (run as root):
#   ./run.sh demo    install what the demo needs, then run the Mininet demo (mininet/demo.py;
#                    options after "demo" go to it, e.g. --quick, --only spread, --out DIR)
#   ./run.sh test    install what the suite needs, then lint, format-check and run every test
# Each sub-command installs its own dependencies (apt packages, a virtualenv in .venv) first,
# and skips the parts that are already in place.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${LOCKSTEP_VENV:-$ROOT/.venv}
# A second virtualenv with classic Ryu 4.34 instead of os-ken, for one smoke test of the app under it.
RYU_VENV=${LOCKSTEP_RYU_VENV:-$ROOT/.venv-ryu}
# Ryu 4.34 (2020) as published does not install or run on Python 3.11: its sdist is built with pbr
# against setuptools<58 without build isolation; eventlet (unpinned by Ryu) is pinned to the pair
# checked on 3.11, 0.33.3 with dnspython 2.6 (ryu_app/shell/compat.py supplies what eventlet dropped).
RYU_BUILD=("setuptools<58" pbr wheel)
RYU_PACKAGES=(ryu==4.34 eventlet==0.33.3 dnspython==2.6.1)

APT_BASE=(python3 python3-venv python3-dev gcc)
# Integration tests: a private Open vSwitch (userspace datapath), namespaces, veths; systemd for
# systemd-analyze (the deployment guide's unit file). tests/kinds.py lists what each test needs.
# nftables: the VMs' drop rule of second chance (TCP non-SYN segments of unknown connections
# dropped), in the integration tests, the deployment guide's test and the double-change demo.
APT_TEST=(openvswitch-switch ethtool iproute2 procps hping3 systemd nftables)
# The Mininet demo (and its end-to-end test): mnexec and iperf3 (and APT_TEST's nftables).
APT_DEMO=(mininet iperf3)

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

ryu_venv_install() {
    if [[ ! -x $RYU_VENV/bin/python ]]; then
        log "creating virtualenv $RYU_VENV (classic Ryu 4.34)"
        /usr/bin/python3 -m venv "$RYU_VENV"
    fi
    [[ -f $RYU_VENV/.gitignore ]] || echo '*' >"$RYU_VENV/.gitignore" # git, and so ruff, skip it
    # Lockstep's runtime dependencies from pyproject.toml, less os-ken (Ryu takes its place).
    local deps stamp=$RYU_VENV/.lockstep-installed want
    mapfile -t deps < <(/usr/bin/python3 -c '
import tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if not dep.startswith("os-ken"):
        print(dep)')
    ((${#deps[@]})) || { log "no dependencies read from pyproject.toml"; return 1; }
    want=$(printf '%s\n' "${RYU_BUILD[@]}" "${RYU_PACKAGES[@]}" "${deps[@]}" | sha256sum | cut -d' ' -f1)
    if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
        log "installing Ryu 4.34 and lockstep (without os-ken) into $RYU_VENV"
        "$RYU_VENV/bin/pip" install -q "${RYU_BUILD[@]}"
        "$RYU_VENV/bin/pip" install -q --no-build-isolation "${RYU_PACKAGES[@]}" "${deps[@]}"
        "$RYU_VENV/bin/pip" install -q --no-deps -e .
        echo "$want" >"$stamp"
    fi
}

cmd_demo() {
    apt_install "${APT_BASE[@]}" "${APT_TEST[@]}" "${APT_DEMO[@]}"
    venv_install
    log "running the demo (mininet/demo.py $*)"
    exec "$VENV/bin/python" mininet/demo.py "$@"
}

cmd_test() {
    apt_install "${APT_BASE[@]}" "${APT_TEST[@]}" "${APT_DEMO[@]}"
    venv_install
    ryu_venv_install
    # tests/integration/test_ryu434.py runs the controller with this interpreter.
    export LOCKSTEP_RYU_PYTHON=$RYU_VENV/bin/python
    log "ruff format --check"
    "$VENV/bin/ruff" format --check .
    log "ruff check"
    "$VENV/bin/ruff" check .
    log "pytest"
    "$VENV/bin/python" -m pytest "$@"
}

case ${1:-} in
    demo) shift; cmd_demo "$@" ;;
    test) shift; cmd_test "$@" ;;
    *)
        echo "usage: $0 demo [demo options...] | $0 test [pytest args...]" >&2
        exit 2
        ;;
esac
