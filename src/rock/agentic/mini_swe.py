"""mini-swe-agent (PyPI, pinned) as an env image: a base image plus the harness's packages in
``/opt/rock/site``, built once by the env image builder (pip in a build sandbox, never on the
host) and found by its content hash afterwards. Both backends start it (bwrap unpacks it).

Offline it needs two things beyond its own dependencies: ``mcp`` beside litellm (litellm imports
it on every completion) and ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (else litellm downloads a price
list); ``RockAgentConfig.mini_swe_agent`` sets the latter. The packages are the full resolved set
of ``mini-swe-agent==2.4.6`` and ``mcp``, pinned and installed without resolution (``no_deps``),
less ``datasets`` and what only it needs (pyarrow, pandas, numpy: ~330 MB used only by
mini-swe-agent's SWE-bench batch runner, not by ``mini``).

    python -m rock.agentic.mini_swe [--base python:3.11]     # builds or finds it; prints the tag
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from rock.envs.images import SITE, EnvImage, EnvImageSpec, ImageBuilder, Progress

VERSION = "2.4.6"
BASE = "python:3.11"
PACKAGES = [
    "aiohappyeyeballs==2.7.1", "aiohttp==3.14.5", "aiosignal==1.4.0", "annotated-doc==0.0.7",
    "annotated-types==0.8.0", "anyio==4.16.0", "attrs==26.1.0", "boto3==1.44.5", "botocore==1.44.5",
    "certifi==2026.10.18", "cffi==2.1.1", "charset-normalizer==3.5.2", "click==8.5.1", "cryptography==50.0.2",
    "distro==1.9.0", "fastuuid==0.14.0", "filelock==3.32.7", "frozenlist==1.8.0", "fsspec==2026.9.0",
    "h11==0.16.0", "h2==4.4.1", "hf-xet==1.8.0", "hpack==4.2.0", "httpcore==1.0.9", "httpcore2==2.16.2",
    "httpx==0.28.1", "httpx2==2.16.2", "huggingface_hub==1.33.0", "hyperframe==6.1.0", "idna==3.20",
    "importlib_metadata==8.9.0", "Jinja2==3.1.6", "jiter==0.19.0", "jmespath==1.1.0", "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1", "linkify-it-py==2.2.0", "litellm==1.106.2", "markdown-it-py==4.3.0",
    "MarkupSafe==3.0.4", "mcp==2.3.0", "mcp-types==2.3.0", "mdit-py-plugins==0.7.0", "mdurl==0.1.2",
    f"mini-swe-agent=={VERSION}", "multidict==7.2.1", "openai==2.54.0", "opentelemetry-api==1.45.2",
    "packaging==26.3", "platformdirs==4.14.7", "prompt_toolkit==3.0.53", "propcache==0.5.4", "pycparser==3.12",
    "pydantic==2.14.3", "pydantic-settings==2.16.3", "pydantic_core==2.50.4", "Pygments==2.21.0",
    "PyJWT==2.15.1", "python-dateutil==2.9.0.post0", "python-dotenv==1.2.4", "python-multipart==0.0.34",
    "PyYAML==6.0.3", "referencing==0.37.0", "regex==2026.11.15", "requests==2.34.2", "rich==15.0.0",
    "rpds-py==2026.9.1", "s3transfer==0.19.3", "shellingham==1.5.4", "six==1.17.0", "sniffio==1.3.1",
    "sse-starlette==3.7.0", "starlette==1.10.0", "tenacity==9.2.1", "textual==8.2.8", "tiktoken==0.14.0",
    "tokenizers==0.23.3", "tqdm==4.70.1", "truststore==0.10.5", "typer==0.29.2", "typing-inspection==0.4.5",
    "typing_extensions==4.16.0", "urllib3==2.8.0", "uvicorn==0.54.0", "wcwidth==0.9.4", "yarl==1.25.1",
    "zipp==4.1.2",
]


def spec(base: str = BASE) -> EnvImageSpec:
    """The env image spec FROM ``base``: mini-swe-agent's pinned packages, installed without resolution and checked
    by importing litellm and mcp."""
    # litellm and mcp are what fails offline when missing; minisweagent itself writes its config
    # folder on import (no home for the checking user), so the run proves it, not the check.
    return EnvImageSpec(base=base, packages=PACKAGES, no_deps=True, imports=["litellm", "mcp"])


async def ensure_image(base: str = BASE, builder: ImageBuilder | None = None,
                       progress: Progress | None = None) -> EnvImage:
    """The image (built when missing, minutes; found in one engine call otherwise)."""
    if builder is None:
        from rock.config import Settings

        settings = Settings()
        builder = ImageBuilder(settings.state_dir, settings.host_python, settings)
    return await builder.ensure(spec(base), progress)


def main(argv: list[str] | None = None) -> int:
    """``python -m rock.agentic.mini_swe [--base IMAGE]``: build or find the image and print its tag; exit status 1
    (the reason on stderr) when the build fails."""
    p = argparse.ArgumentParser(prog="python -m rock.agentic.mini_swe",
                                description=f"build (or find) the mini-swe-agent {VERSION} env image; prints its tag")
    p.add_argument("--base", default=BASE, help=f"the image it is built FROM (default {BASE})")
    args = p.parse_args(argv)
    from rock.envs.errors import EnvError

    try:
        image = asyncio.run(ensure_image(args.base, progress=lambda line: print(line, file=sys.stderr, flush=True)))
    except EnvError as exc:
        print(f"mini-swe-agent image: {exc.message}", file=sys.stderr)
        return 1
    how = f"built in {image.seconds:.0f} s" if image.built else "found"
    print(f"mini-swe-agent {VERSION} image {image.tag} ({how})", file=sys.stderr)
    print(image.tag)
    return 0


__all__ = ["BASE", "PACKAGES", "SITE", "VERSION", "ensure_image", "spec"]

if __name__ == "__main__":
    raise SystemExit(main())
