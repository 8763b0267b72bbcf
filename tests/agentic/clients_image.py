"""An env image with the vendors' own Python clients (``anthropic``, ``openai``), pinned, for tests
that parse the model endpoint's answers with them inside a sandbox. Built once per base image by
the env image builder (pip in a build sandbox, never on the host), then found by its content."""

from __future__ import annotations

import asyncio

from rock.envs.images import EnvImageSpec

BASE = "python:3.11"
# ``anthropic`` 2.14.0 and ``openai`` 3.57.0 with their whole resolved set, installed without
# resolution so the image is the same every time.
PACKAGES = [
    "annotated-types==0.8.0", "anthropic==2.14.0", "anyio==4.16.0", "docstring_parser==0.18.0", "h11==0.16.0",
    "httpcore2==2.16.2", "httpx2==2.16.2", "idna==3.20", "jiter==0.19.0", "openai==3.57.0",
    "opentelemetry-api==1.45.2", "pydantic==2.14.4", "pydantic_core==2.50.5", "sniffio==1.3.1",
    "truststore==0.10.5", "typing-inspection==0.4.5", "typing_extensions==4.16.0",
]


def spec(base: str = BASE) -> EnvImageSpec:
    return EnvImageSpec(base=base, packages=PACKAGES, no_deps=True, imports=["anthropic", "openai"])


async def ensure_image(base: str = BASE, progress=None):
    from rock.config import Settings
    from rock.envs.images import ImageBuilder

    settings = Settings()
    return await ImageBuilder(settings.state_dir, settings.host_python, settings).ensure(spec(base), progress)


if __name__ == "__main__":
    image = asyncio.run(ensure_image(progress=print))
    print(image.tag, image.built, image.seconds)
