"""The sandbox's model side: the OpenAI/Anthropic-compatible endpoint on loopback
(``endpoint.py``, its HTTP in ``wire.py``, ``messages.py``, ``responses.py``), the in-sandbox
``rock model-service`` command (``modelcli.py``) and our small coding agent (``harness.py``).
Calls leave through the agent's socket; the admin answers and records them (``rock/chat/``, through the door ``rock/admin/chat/``)."""
