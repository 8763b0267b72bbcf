"""The sandboxes every front door shares: their records and the state machine that moves them.

One ``Sandboxes`` object per admin (``ctx.sandboxes``); each door (``rock_api``, ``e2b``, ``ui``,
``envs``, ``training``, ``chat``, ``ports``) calls its operations and owns none of this.

- ``service.py``: ``Sandboxes``, the record state machine under each sandbox's lock: create
  (idempotent), stop, delete, pause, resume, snapshot, fork;
- ``held.py``: where records are kept (live ones in memory, all in the store) and what other
  processes write of them;
- ``snapshots.py``: what concerns snapshots only (names, modes, listing, deletes), and why the
  transitions stay in the service;
- ``lifecycle.py``: ROCK's lifecycle beyond start and stop (restart, archive, commit) and the
  timed transitions of a stopped sandbox;
- ``reaper.py``: idle TTLs and the reaper lease; ``nodes.py``: what the records do when a
  cluster node goes or comes back, and the sweep over shared state;
- ``start_checks.py``: what a start request asks that this machine cannot give, refused naming
  the field.
- ``listing.py``: a listing's query (filters and page), the API's and the UI's alike.
"""

from rock.admin.sandboxes.service import Sandboxes

__all__ = ["Sandboxes"]
