"""rl-rock's ``rock.actions.sandbox.response`` import path: the response models."""

# rl-rock's path re-exports every response model (the list is rock.actions.response's)
from rock.actions.response import *  # noqa: F401,F403
