"""The SDK's import path for its HTTP client and the envelope -> exception mapping; both live in
``rock.client`` (one client for every caller of the admin)."""

from __future__ import annotations

from rock.client.envelope import dumps as _dumps
from rock.client.envelope import error_from
from rock.client.envelope import loads as _loads
from rock.client.envelope import unwrap_bytes as _unwrap_bytes
from rock.client.http import PREFIX, Http, unwrap

__all__ = ["PREFIX", "Http", "error_from", "unwrap", "_dumps", "_loads", "_unwrap_bytes"]
