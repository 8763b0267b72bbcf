"""ROCK: isolated sandboxes and RL environments for agentic RL, compatible with the ROCK SDK."""

__version__ = "0.1.0"


_EXCEPTIONS = ("RockException", "BadRequestRockError", "InternalServerRockError", "CommandRockError", "raise_for_code")


def __getattr__(name):
    if name == "codes":
        from rock._codes import codes

        return codes
    # Loaded on first use, so `import rock` stays cheap for code that only needs one part.
    if name in ("make", "make_vec", "make_async", "make_vec_async"):
        from rock.sdk.envs import client

        return getattr(client, name)
    if name in _EXCEPTIONS:  # rl-rock exports these at the top level
        from rock.sdk.common import exceptions

        return getattr(exceptions, name)
    raise AttributeError(f"module 'rock' has no attribute {name!r}")
