"""The sandbox SDK: ``Sandbox``, ``SandboxGroup`` (async), ``SyncSandbox``, their configs, and ``Snapshot``."""

from rock.sdk.sandbox.client import Sandbox, SandboxGroup
from rock.sdk.sandbox.config import SandboxConfig, SandboxGroupConfig
from rock.sdk.sandbox.secrets import SecretInfo, Secrets
from rock.sdk.sandbox.snapshots import Snapshot
from rock.sdk.sandbox.sync import SyncSandbox
from rock.sdk.sandbox.volumes import VolumeInfo, VolumeMount, Volumes

__all__ = ["Sandbox", "SandboxGroup", "SandboxConfig", "SandboxGroupConfig", "SecretInfo", "Secrets", "Snapshot",
           "SyncSandbox", "VolumeInfo", "VolumeMount", "Volumes"]
