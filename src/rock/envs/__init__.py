"""Envs: the catalog of env ids, their hosting in env sandboxes (many GEM envs share one; a gymnasium
session has one of its own), vector envs, env images built in build sandboxes, and the clients
users import (``rock.make``: ``client.py``, ``vec_client.py``)."""
