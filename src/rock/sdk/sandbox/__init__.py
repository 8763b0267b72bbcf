"""The sandbox SDK: ``Sandbox``, ``SandboxGroup`` (async), ``SyncSandbox``, and their configs."""

from rock.sdk.sandbox.client import Sandbox, SandboxGroup
from rock.sdk.sandbox.config import SandboxConfig, SandboxGroupConfig
from rock.sdk.sandbox.sync import SyncSandbox

__all__ = ["Sandbox", "SandboxGroup", "SandboxConfig", "SandboxGroupConfig", "SyncSandbox"]
