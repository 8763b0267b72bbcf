"""Secrets from the SDK: values a sandbox may use without holding them.

    from rock.sdk.sandbox import Sandbox, SandboxConfig, Secrets

    secrets = Secrets(SandboxConfig())                      # the admin and token of a config
    await secrets.create("openai", "sk-...", hosts=["api.openai.com"])
    sandbox = Sandbox(SandboxConfig(egress={"allow": ["api.openai.com"]}, secrets={"OPENAI_API_KEY": "openai"}))
    await sandbox.start()    # $OPENAI_API_KEY is a placeholder; requests to api.openai.com carry the key

The admin's egress relay puts the value in place of the placeholder in requests to the secret's
hosts only (HTTPS too: the sandbox trusts the relay's CA through ``SSL_CERT_FILE``). No read
returns a value; another token's secret is a missing one (404).
"""

from __future__ import annotations

from urllib.parse import quote

from rock.actions.secrets import SecretInfo
from rock.sdk.sandbox.http import Http


class Secrets:
    """The secrets of the token a config carries, on its admin (``SandboxConfig`` or any config
    with ``base_url`` and ``headers()``), or on an ``Http`` client already made for one."""

    def __init__(self, config=None, *, http: Http | None = None):
        if http is None:
            from rock.sdk.sandbox.config import SandboxConfig

            http = Http.for_config(config if config is not None else SandboxConfig())
        self._http = http

    async def create(self, name: str, value: str, hosts: list[str]) -> SecretInfo:
        """Register secret ``name`` with ``value`` (write-only), sent to ``hosts`` only (at least one)."""
        return SecretInfo.model_validate(await self._http.post("/secrets", {"name": name, "value": value,
                                                                             "hosts": list(hosts)}))

    async def list(self) -> list[SecretInfo]:
        """Your secrets: names, hosts and placeholders, never values."""
        return [SecretInfo.model_validate(s) for s in await self._http.get("/secrets", {})]

    async def get(self, name: str) -> SecretInfo:
        """One of your secrets (``SecretNotFound`` when you have none of that name)."""
        return SecretInfo.model_validate(await self._http.get(f"/secrets/{quote(name, safe='')}", {}))

    async def delete(self, name: str) -> None:
        """Delete the secret: the relay stops sending it at once."""
        await self._http.delete(f"/secrets/{quote(name, safe='')}")

    async def aclose(self) -> None:
        """Close the connections of a client this object made."""
        await self._http.aclose()


__all__ = ["SecretInfo", "Secrets"]
