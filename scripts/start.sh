#!/usr/bin/env bash
# The main job: set this machine up, start the admin with the best backend it has,
# and show a newcomer what it does through the public SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-host.sh
rock admin stop >/dev/null 2>&1 || true
rock admin start
rock admin status
echo
python3 examples/demo.py
echo
echo "The admin keeps running at ${ROCK_BASE_URL:-http://127.0.0.1:8080}; try: rock sandbox create, rock sandbox list, rock envs list."
echo "Stop it with: rock admin stop"
