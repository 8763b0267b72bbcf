"""The model side of agentic rollouts: the trainer's fast client for the sandboxes' model endpoints."""

from rock.sdk.model.trainer import ChatTrainer, SyncChatTrainer

__all__ = ["ChatTrainer", "SyncChatTrainer"]
