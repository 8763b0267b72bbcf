"""The Chat protocol's domain: the admin's side of the OpenAI-compatible model endpoint inside
every sandbox. No web framework here; the admin's door (``rock.admin.chat``) translates HTTP and
WebSocket onto it.

    hub.py        the admin's side of every endpoint (``ctx.chat``, made by rock.admin.root); endpoint.py: one of them
    native*.py    the three wire formats (chat completions, Anthropic Messages, OpenAI Responses)
    upstream.py, stream.py, records.py, sandbox_cli.py: proxy/replay, SSE chunks, the record
                  log, ``rock model-service`` run inside a sandbox

A new wire format the sandbox's agent speaks: a ``native_*.py`` beside the others.
"""
