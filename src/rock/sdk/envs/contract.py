"""What a sandboxed gymnasium env reports about itself: ``SpaceSpec`` and ``EnvContract``.

Both are wire-safe (strict JSON): a ``SpaceSpec`` is ``{kind, shape, dtype, details}`` for one
space, nested for Dict and Tuple; ``to_space()`` gives the gymnasium space back. Kinds and their
details are documented in ``rock/agent/envhost/gymwire.py`` (``space_spec``), which makes them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SpaceKind = Literal["box", "discrete", "multi_discrete", "multi_binary", "text", "dict", "tuple"]


class SpaceSpec(BaseModel):
    """A gymnasium space as data: its kind (box, discrete, dict, ...), shape, dtype and the kind's details.
    Made by the env host (``rock/agent/envhost/gymwire.py``); ``to_space`` builds the gymnasium space."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SpaceKind
    shape: list[int] | None = None
    dtype: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    def to_space(self) -> Any:
        """The gymnasium space (needs gymnasium on the client)."""
        from rock.agent.envhost.gymwire import spec_space

        return spec_space(self.model_dump())  # type: ignore[no-untyped-call]  # the agent's module: stdlib, untyped

    def children(self) -> dict[str, "SpaceSpec"] | list["SpaceSpec"] | None:
        """A dict or tuple space's subspaces (a dict or a list), None for every other kind."""
        spaces: Any = self.details.get("spaces")
        if self.kind == "dict":
            return {k: SpaceSpec(**v) for k, v in spaces.items()}
        if self.kind == "tuple":
            return [SpaceSpec(**v) for v in spaces]
        return None


class EnvContract(BaseModel):
    """What a made env declares once, at make: its id, render mode, metadata, ``num_envs`` and spaces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    render_mode: str | None = None
    num_envs: int = 1
    metadata: dict[str, Any] = Field(default_factory=dict)
    observation_space: SpaceSpec  # one env's, for vector envs too
    action_space: SpaceSpec
