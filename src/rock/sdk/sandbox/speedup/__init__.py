from rock.sdk.sandbox.speedup.types import SpeedupType

__all__ = ["SpeedupType"]
