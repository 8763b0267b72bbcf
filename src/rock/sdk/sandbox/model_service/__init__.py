from rock.sdk.sandbox.model_service.base import ModelService, ModelServiceConfig

__all__ = ["ModelService", "ModelServiceConfig"]
