"""ROCK: isolated sandboxes and RL environments for agentic RL, compatible with the ROCK SDK."""

__version__ = "0.1.0"


def __getattr__(name):
    # `rock.make` loads the env client only when used, so `import rock` stays cheap.
    if name in ("make", "make_vec"):
        from rock.envs import client

        return getattr(client, name)
    raise AttributeError(f"module 'rock' has no attribute {name!r}")
