"""``Network.speedup``'s kinds: mirrors a sandbox's apt, pip or github.com traffic goes to."""

from rock.sdk.sandbox.speedup.types import SpeedupType

__all__ = ["SpeedupType"]
