"""The SDK's import path for the lean async transport; it lives in ``rock.client.transport``."""

from rock.client.transport import LeanTransport

__all__ = ["LeanTransport"]
