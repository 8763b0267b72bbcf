"""ROCK as an environment for Harbor (0.26), on ROCK's own API: no E2B layer in between.

    harbor run -p TASKS -a oracle \\
        --environment-import-path rock.integrations.harbor:RockEnvironment \\
        --ek base_url=http://127.0.0.1:8080 [--ek token=...]

(or ``ROCK_BASE_URL`` / ``ROCK_TOKEN`` in Harbor's environment). Each trial's environment is one
ROCK sandbox (``rock.sdk.sandbox.Sandbox``): the task's ``[environment] docker_image``, or its
``environment/Dockerfile`` built by the admin with ``environment/`` as the build context; memory and
CPUs from the task. Harbor's network policy is enforced as ROCK enforces networks: public, or none
(``no-network``); an allow-list is refused before start. Commands run through ``bash -c`` as root,
or as the user Harbor names (``setpriv`` for a uid, ``su`` for a name). Files move as ROCK's
SDK moves them (a tar stream up, a tar down, links that leave the folder refused).

This module is imported by Harbor's interpreter (Python >= 3.12, with ``harbor`` installed), not
by ROCK's server; it needs ROCK's SDK importable there.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from harbor.environments.base import BaseEnvironment, ExecResult
from harbor.environments.capabilities import EnvironmentCapabilities
from harbor.environments.definition import (
    effective_exec_cwd,
    require_agent_environment_definition,
)

from rock.actions import Command
from rock.sdk.sandbox.client import Sandbox
from rock.sdk.sandbox.config import SandboxConfig

# A sandbox outlives a Harbor process that dies without stopping it by at most this long.
IDLE_SECONDS = 3 * 3600


class RockEnvironment(BaseEnvironment):
    """Harbor's ``BaseEnvironment`` on one ROCK sandbox per trial environment. ``base_url`` and ``token`` come
    from ``--ek`` (or ``ROCK_BASE_URL`` / ``ROCK_TOKEN``)."""

    def __init__(self, *args, base_url: str | None = None, token: str | None = None, **kwargs):
        self._base_url = base_url or os.environ.get("ROCK_BASE_URL") or "http://127.0.0.1:8080"
        self._token = token or os.environ.get("ROCK_TOKEN")
        self._box: Sandbox | None = None
        super().__init__(*args, **kwargs)

    @staticmethod
    def type() -> str:
        """Harbor's name for this environment."""
        return "rock"

    @property
    def capabilities(self) -> EnvironmentCapabilities:
        """What ROCK's sandboxes enforce: no network at all, or a public one; no allow-lists, GPUs or compose."""
        return EnvironmentCapabilities(disable_internet=True)

    def _validate_definition(self):
        require_agent_environment_definition(self.environment_dir, docker_image=self.task_env_config.docker_image)

    def _config(self) -> SandboxConfig:
        conf = self.task_env_config
        image = conf.docker_image
        dockerfile = self.environment_dir / "Dockerfile"
        source = {"image": image} if image else {"dockerfile": dockerfile.read_text(),
                                                 "build_context": str(self.environment_dir)}
        memory = self._effective_memory_mb
        cpus = self._effective_cpus
        return SandboxConfig(base_url=self._base_url, token=self._token, network=not self._network_disabled,
                             memory=f"{int(memory)}m" if memory else "2g", cpus=float(cpus) if cpus else 1.0,
                             auto_clear_seconds=IDLE_SECONDS, env=dict(conf.env) or None, **source)

    async def start(self, force_build: bool) -> None:
        """Start the sandbox (the admin builds a Dockerfile once per content; ``force_build`` changes nothing)."""
        box = Sandbox(self._config())
        await box.start()
        self._box = box
        workdir = self.task_env_config.workdir
        if workdir:
            await self.exec(f"mkdir -p {shlex.quote(workdir)}", cwd="/", user="root")
        # Harbor's output folders (/logs/agent, /logs/verifier, /logs/artifacts): made here, as its other
        # providers without host mounts make them; Harbor downloads them after each phase.
        await self.ensure_dirs(self._mount_targets(writable_only=True))
        await self._upload_environment_dir_after_start()

    async def stop(self, delete: bool):
        """Stop the sandbox (ROCK removes a stopped sandbox: ``delete`` changes nothing)."""
        if self._box is not None:
            box, self._box = self._box, None
            await box.stop()

    def _need_box(self) -> Sandbox:
        if self._box is None:
            raise RuntimeError("the ROCK sandbox is not started")
        return self._box

    async def upload_file(self, source_path: Path | str, target_path: str):
        """One local file into the sandbox (its folder made first), mode kept."""
        source = Path(source_path)
        await self.exec(f"mkdir -p {shlex.quote(os.path.dirname(target_path) or '/')}", cwd="/", user="root")
        await self._need_box().write_bytes(target_path, source.read_bytes(), mode=source.stat().st_mode & 0o777)

    async def upload_dir(self, source_dir: Path | str, target_dir: str):
        """A local folder's contents into ``target_dir`` (made when missing)."""
        await self.exec(f"mkdir -p {shlex.quote(target_dir)}", cwd="/", user="root")
        await self._need_box().upload_dir(Path(source_dir), target_dir)

    async def download_file(self, source_path: str, target_path: Path | str):
        """One file of the sandbox to ``target_path``."""
        target = Path(target_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        await self._need_box().download(source_path, target)

    async def download_dir(self, source_dir: str, target_dir: Path | str):
        """A folder of the sandbox into ``target_dir`` (made when missing; files there are overwritten)."""
        target = Path(target_dir)
        target.mkdir(parents=True, exist_ok=True)
        await self._need_box().download(source_dir, target)

    async def exec(self, command: str, cwd: str | None = None, env: dict[str, str] | None = None,
                   timeout_sec: int | None = None, user: str | int | None = None) -> ExecResult:
        """``command`` through ``bash -c`` in the sandbox; past ``timeout_sec`` it is killed and this raises, as
        Harbor's docker environment does."""
        user = self._resolve_user(user)
        argv = ["bash", "-c", command]
        if user is not None and str(user) not in ("root", "0"):
            argv = (["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
                    if isinstance(user, int) or str(user).isdigit() else
                    ["su", "-s", "/bin/bash", str(user), "-c", command])
        workdir = effective_exec_cwd(cwd, self.task_env_config.workdir, None)
        r = await self._need_box().execute(Command(command=argv, cwd=workdir, env=self._merge_env(env),
                                                   timeout=float(timeout_sec) if timeout_sec else 24 * 3600.0))
        if r.timed_out:
            raise RuntimeError(f"Command timed out after {timeout_sec} seconds")
        return ExecResult(stdout=r.stdout, stderr=r.stderr, return_code=r.exit_code)
