"""The in-sandbox agent. Standard library only; imports nothing from the rest of rock.

Inside a sandbox this package is mounted as ``/.rock/lib/rock_agent`` and started by ``boot.py``.
"""
