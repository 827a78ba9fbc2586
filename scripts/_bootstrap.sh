# Sourced by scripts/serve, scripts/test and scripts/bench: make .venv match requirements.lock.
# A stamp (hash of the lock and pyproject) lets a second run skip the install entirely.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

pick_python() {
    for cand in "${ATHENA_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$cand" ] || continue
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$cand"
            return 0
        fi
    done
    echo "athena: Python 3.11 or newer is required" >&2
    return 1
}

stamp_of() {
    cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}

bootstrap() {
    local want
    want="$(stamp_of)"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.athena-stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    local py
    py="$(pick_python)"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "athena: creating $VENV with $py" >&2
        "$py" -m venv "$VENV"
    fi
    echo "athena: installing locked dependencies (first run only)" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null || true
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.lock"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"
    echo "$want" >"$VENV/.athena-stamp"
}

bootstrap
