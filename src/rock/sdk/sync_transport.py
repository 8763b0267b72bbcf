"""The SDK's import path for the lean blocking connection; it lives in ``rock.client.sync_transport``."""

from rock.client.sync_transport import Connection, ConnectionDropped, Response

__all__ = ["Connection", "ConnectionDropped", "Response"]
