"""rl-rock's abstract env: what ``rock.make`` returns implements these two calls."""

import abc
from typing import Any


class Env(abc.ABC):
    """The Gym-style env interface of rl-rock: ``reset`` starts an episode, ``step`` applies one action."""

    @abc.abstractmethod
    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """-> (observation, reward, terminated, truncated, info)"""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> tuple[Any, dict[str, Any]]:
        """-> (observation, info)"""
