"""Training tasks: dataset-backed task instances with rewards, and a rollout runner.

``tasks/`` runs inside sandboxes (it is copied into each suite's env image); ``suites.py``,
``service.py`` and ``hostsite.py`` run in the admin; ``runner.py`` and ``policies.py`` on the
caller's side.
"""
