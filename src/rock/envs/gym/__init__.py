"""Gymnasium sessions: one sandbox per session, values as gymwire bodies.

- ``sessions.py``: ``GymSessions``, the admin's side: open (image builds included), reset, step,
  render, leases, close, listing;
- ``forks.py``: a session's ``fork(n)``: its seeded reset and actions replayed into new sessions,
  or a full fork of its sandbox on gVisor;
- ``http.py``: the client's side: the session's HTTP client and the thread that renews its lease
  (``rock.envs.sandbox_env`` drives it).

Nothing here imports the others' side: a client process loads ``http.py`` alone.
"""
