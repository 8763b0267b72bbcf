"""Gymnasium sessions: one sandbox per session, values as gymwire bodies.

- ``sessions.py``: ``GymSessions``, the admin's side: open (image builds included), reset, step,
  render, leases, close, listing;
- ``forks.py``: a session's ``fork(n)``: its seeded reset and actions replayed into new sessions,
  or a full fork of its sandbox on gVisor;
- ``http.py``: an old import path of the client's side, which is ``rock.sdk.envs.gym_http`` (the
  session's HTTP client and the thread that renews its lease; ``rock.sdk.envs.sandbox_env`` drives it).
"""
