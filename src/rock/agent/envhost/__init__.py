"""Envs inside the sandbox: the agent's ``env.*`` ops (``ops.py``) and the env host they start.

The host (``host.py``) runs as its own process with the env image's site-packages and loads
its siblings (``serve``, ``guard``, ``rng``, ``codec``, ``gym*``) by path, never through this
package, so that env code can neither shadow nor be shadowed by them.
"""
