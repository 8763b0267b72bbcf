"""The env clients' import path for their HTTP (``SyncHttp``, ``AsyncHttp``) and the error mapping;
they live in ``rock.client`` (one client for every caller of the admin)."""

from __future__ import annotations

from rock.client.config import TIMEOUT, auth_headers, resolve_token, resolve_url
from rock.client.envelope import loads, raise_for
from rock.client.http import GEM, AsyncHttp, SyncHttp


def _headers(token: str | None) -> dict[str, str]:
    return auth_headers(resolve_token(token))


def _base(base_url: str | None) -> str:
    return resolve_url(base_url).rstrip("/")


__all__ = ["GEM", "TIMEOUT", "AsyncHttp", "SyncHttp", "loads", "raise_for", "_base", "_headers"]
