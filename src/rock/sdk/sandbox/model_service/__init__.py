"""rl-rock's ``sandbox.model_service``: the sandbox's model endpoint driven from the SDK (``ModelService``)."""

from rock.sdk.sandbox.model_service.base import ModelService, ModelServiceConfig

__all__ = ["ModelService", "ModelServiceConfig"]
