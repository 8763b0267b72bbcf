"""Envs: the catalog of env ids, their hosting in env sandboxes (many GEM envs share one; a gymnasium
session has one of its own), vector envs and env images built in build sandboxes: the service's side only. The clients users
import (``rock.make``, ``rock.make_vec``, gymnasium sessions) are ``rock.sdk.envs``; ``client.py``,
``vec_client.py``, ``sandbox_env.py``, ``contract.py``, ``wire.py`` and ``gym/http.py`` here are
their old import paths, kept for importers."""
