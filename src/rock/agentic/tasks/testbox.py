"""Third-party code at suite build time runs in sandboxes, never on the host.

Building ``pypi-bugs`` runs each library's own test suite once as the baseline, then once per
mutant; and fetching a library's sdist with pip may run its build backend. Both are code the host
should not run (the same hole as a host running a caller's package), so:

- ``download_sdist``: ``pip download --no-binary :all: --no-deps`` in a build sandbox (the docker
  engine's runtime, with a network of its own: ``rock.envs.build_sandbox``), the archive read back;
- ``TestBox``: a sandbox of the verifier image (the suite's base image plus ROCK's pinned pytest,
  ``rock.agentic.tasks.verifier``) with no network, holding a copy of the library; each run
  writes the mutated file, runs the verifier's own supervisor (runner ``pytest``, as an
  unprivileged user, every process ended afterwards) and puts the file back. The results are
  what a rollout's verifier would see, from the same runner.

A builder keeps as many boxes as it runs tests at once (one per core by default).
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path

from rock.agentic.tasks import verifier
from rock.agentic.tasks.errors import TaskError

REPO = "/work/repo"
OUTPUT_LIMIT = 64 << 20  # a report of every test of a large suite, with messages


def _builder():
    from rock.config import Settings
    from rock.envs.images import ImageBuilder

    settings = Settings()
    return ImageBuilder(settings.state_dir, settings.host_python, settings)


async def _sandbox(builder, image: str, network: bool):
    from rock.envs.build_sandbox import BuildSandbox, build_spec
    from rock.envs.images import _bytes

    s = builder.settings
    spec = build_spec(image, _bytes(s.build_memory), s.build_cpus, s.pids_limit, network, builder.python)
    return BuildSandbox(builder.runtime(), spec, builder.python)


async def download_sdist(name: str, version: str, base: str, say=print) -> tuple[str, bytes]:
    """(file name, bytes) of ``name==version``'s source distribution, fetched by pip in a build
    sandbox of ``base`` (pip may run the sdist's build backend to read its metadata: there)."""
    from rock.envs.build_sandbox import WORK, pip_env

    builder = _builder()
    say(f"pip download {name}=={version} (source distribution, in a build sandbox)")
    async with await _sandbox(builder, base, network=True) as box:
        for d in (f"{WORK}/home", f"{WORK}/tmp", f"{WORK}/dl"):
            await box.client.mkdir(d)
        tail: list[str] = []
        argv = [builder.python, "-I", "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-binary",
                ":all:", "--no-deps", "-d", f"{WORK}/dl", f"{name}=={version}"]
        env = {"HOME": f"{WORK}/home", "TMPDIR": f"{WORK}/tmp", **pip_env(builder.python)}
        code = await box.run(argv, [WORK], f"{WORK}/tmp", env, 600, lambda line: tail.append(line))
        files = [f for f in await box.client.list_dir(f"{WORK}/dl") if f["name"].endswith((".tar.gz", ".zip"))]
        if code != 0 or not files:
            raise TaskError(f"downloading {name}=={version} failed (pip exit {code}): {' '.join(tail[-5:])[-500:]}",
                            "BuildFailed")
        return files[0]["name"], await box.client.read_file(f"{WORK}/dl/{files[0]['name']}")


class TestBox:
    """One sandbox of the verifier image holding a copy of a repository; ``run`` runs test files
    there with the verifier's runner. Use as ``async with TestBox(image) as box: await box.load(repo)``."""

    __test__ = False  # a name pytest would otherwise collect

    def __init__(self, image: str, builder=None):
        self.image = image
        self.builder = builder or _builder()
        self._box = None

    async def __aenter__(self) -> "TestBox":
        self._box = await _sandbox(self.builder, self.image, network=False)
        await self._box.__aenter__()
        try:
            await self._box.client.tar_put(verifier.WHERE, _chunks(_tar_dir(verifier.box_files())))
        except BaseException:
            await self._box.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self._box.__aexit__(*exc)

    @property
    def sandbox_id(self) -> str:
        """The id of the build sandbox the tests run in (for logs and clean-up checks)."""
        return self._box.spec.sandbox_id

    async def load(self, repo: Path) -> None:
        """A copy of ``repo`` at ``REPO`` (the one before, if any, replaced)."""
        await self._box.client.exec(["rm", "-rf", REPO], timeout=120)
        await self._box.client.tar_put(REPO, _chunks(await asyncio.to_thread(_tar_dir, repo)))

    async def run(self, files: list[str], pythonpath: list[str], timeout: float,
                  changed: dict[str, str] | None = None) -> dict | None:
        """The verifier's report (``results`` per test) of ``files`` run with ``changed`` files
        in place of the repository's (put back afterwards); None when the run timed out."""
        client = self._box.client
        originals = {}
        try:
            for rel, text in (changed or {}).items():
                originals[rel] = await client.read_file(f"{REPO}/{rel}")
                await client.write_file(f"{REPO}/{rel}", text.encode())
            spec = {"mode": "pytest", "workdir": REPO, "timeout": timeout, "env": {}, "overlay": [],
                    "pytest": {"files": files, "pythonpath": pythonpath, "site": [verifier.SITE]}}
            argv = ["sh", "-c", verifier.LAUNCH, "sh", f"{verifier.WHERE}/supervise.py", json.dumps(spec)]
            r = await client.exec(argv, cwd="/", timeout=timeout + verifier.MARGIN_S, max_output=OUTPUT_LIMIT)
        finally:
            for rel, data in originals.items():
                await client.write_file(f"{REPO}/{rel}", data)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            raise TaskError(f"the test sandbox {self.sandbox_id} gave no report (exit {r.exit_code}): "
                            f"{(r.stderr or r.stdout)[-500:]}", "BuildFailed") from None
        if report.get("error"):
            raise TaskError(f"tests in sandbox {self.sandbox_id}: {report['error']}", "BuildFailed")
        return None if report.get("timed_out") else report


def results_of(report: dict | None) -> dict:
    """{nodeid: {"outcome", "message"}}: a report's tests, a collection error failing its file;
    {} for a run that timed out or reported nothing."""
    data = (report or {}).get("results")
    if not isinstance(data, dict):
        return {}
    results = dict(data.get("tests") or {})
    for nodeid, message in (data.get("collection_errors") or {}).items():
        results[nodeid + "::<collection>"] = {"outcome": "failed", "message": message}
    return results


def _tar_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for child in sorted(Path(path).iterdir()):
            tar.add(child, arcname=child.name)
    return buf.getvalue()


async def _chunks(data: bytes):
    for i in range(0, len(data), 1 << 20):
        yield data[i:i + (1 << 20)]
