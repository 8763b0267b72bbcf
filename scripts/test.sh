#!/usr/bin/env bash
# The whole test suite against the real Docker engine, bubblewrap and cgroups.
# Installs what is missing, starts what must run, stops what it started.
set -uo pipefail
cd "$(dirname "$0")/.."
export ROCK_STARTED_FILE
ROCK_STARTED_FILE=$(mktemp /tmp/rock-started.XXXXXX)

stop_started() {
  while read -r name pid; do
    [ -n "${pid:-}" ] || continue
    echo "[test] stopping $name (pid $pid) started for this run"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done <"$ROCK_STARTED_FILE"
  rm -f "$ROCK_STARTED_FILE"
}
trap stop_started EXIT

bash scripts/setup-host.sh || exit 1
# Lint and types first (pyproject.toml's [tool.ruff] and [tool.mypy]): seconds, before the suite's minutes.
for tool in ruff mypy; do
  python3 -m "$tool" --version >/dev/null 2>&1 ||
    python3 -m pip install -q "$tool" 2>&1 | grep -v -e 'Running pip as' -e 'is ignored' || true
done
python3 -m ruff check src tests bench || { echo "[test] ruff found problems (above)"; exit 1; }
python3 -m mypy || { echo "[test] mypy found problems (above)"; exit 1; }
# Two test processes (pytest-xdist), a file at a time each: on a 2-core machine one process leaves
# a core idle most of the time (sandboxes starting, servers waiting) and the suite takes ~38 min
# instead of ~22. ROCK_TEST_WORKERS=0 runs it in this process alone; arguments after these win.
python3 -m pytest -q -ra -p no:cacheprovider --durations=25 -n "${ROCK_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "[test] pytest collected no tests: that is a failure"
  rc=1
fi
exit "$rc"
