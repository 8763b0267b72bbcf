"""ROCK's SDK at rl-rock's import paths: ``rock.sdk.sandbox`` (sandboxes, their agents and model
service), ``rock.sdk.model`` (the trainer's side of the Chat endpoint), ``rock.sdk.training``,
``rock.sdk.envs`` (rl-rock's env client) and ``rock.sdk.common`` (the exceptions)."""
