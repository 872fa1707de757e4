#!/usr/bin/env bash
# Prepare a fresh machine: a pinned virtual environment from PyPI and Debian's mosquitto.
# Idempotent; every failure ends with one line saying what is wrong.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
py=${PYTHON:-python3}

die() { echo "bootstrap: $*" >&2; exit 1; }

command -v "$py" >/dev/null || die "no $py on PATH; install Python 3.11 (Debian: apt-get install python3 python3-venv)"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$py is older than 3.11"

stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ "$here/requirements-dev.txt" -nt "$stamp" ]; then
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || die "cannot create $venv (Debian: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements-dev.txt" \
        || die "pip could not install requirements-dev.txt from PyPI (network or index problem, see above)"
    touch "$stamp"
fi

# the project itself, editable (tools/ stays where it is): the console script bdmeter-headend in .venv/bin
# then runs from any folder. pip fetches the build backend pinned in pyproject.toml from PyPI.
proj="$venv/.project-installed"
if [ ! -x "$venv/bin/bdmeter-headend" ] || [ ! -f "$proj" ] || [ "$here/pyproject.toml" -nt "$proj" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$here" \
        || die "pip could not install the project itself (pyproject.toml) into $venv"
    touch "$proj" "$stamp"
fi

if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing Debian package mosquitto"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null) \
            || die "apt-get could not install mosquitto"
    else
        die "mosquitto is missing and cannot be installed here (needs root and apt-get): install the 'mosquitto' package"
    fi
fi

# the dashboard's front-end libraries (Leaflet, markercluster): pinned in tools/headend/web/package-lock.json,
# installed from the npm registry into tools/headend/web/node_modules (git-ignored); served by the head-end itself
web="$here/tools/headend/web"
if [ ! -f "$web/node_modules/.installed" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.installed" ]; then
    command -v npm >/dev/null || die "npm is missing: install Node.js and npm (Debian: apt-get install npm)"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
        || die "npm could not install the dashboard's libraries (tools/headend/web/package-lock.json)"
    touch "$web/node_modules/.installed"
fi

# Debian's chromium for the dashboard's browser tests (driven by Playwright with its executable path; Playwright
# never downloads a browser of its own here)
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing Debian package chromium"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || die "apt-get could not install chromium"
    else
        die "chromium is missing and cannot be installed here (needs root and apt-get): install the 'chromium' package"
    fi
fi

# Debian's PostgreSQL 15 for the tests of the head-end's PostgreSQL store (the tests start their own server
# with initdb in a temporary folder; nothing here starts or configures a system service)
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing Debian package postgresql"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
            || die "apt-get could not install postgresql"
    else
        die "PostgreSQL 15 is missing and cannot be installed here (needs root and apt-get): install 'postgresql'"
    fi
fi
