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

from rock.actions.secrets import SecretInfo
from rock.sdk.sandbox.named import Named


class Secrets(Named[SecretInfo]):
    """The secrets of the token a config carries, on its admin (``SandboxConfig`` or any config
    with ``base_url`` and ``headers()``), or on an ``Http`` client already made for one. ``list``,
    ``get`` and ``delete`` by name come from ``Named``; no read returns a value."""

    route = "/secrets"
    info = SecretInfo

    async def create(self, name: str, value: str, hosts: list[str]) -> SecretInfo:
        """Register secret ``name`` with ``value`` (write-only), sent to ``hosts`` only (at least one)."""
        return self._one(await self._http.post(self.route, {"name": name, "value": value, "hosts": list(hosts)}))


__all__ = ["SecretInfo", "Secrets"]
