"""One node's sandboxes: ``worker.py`` starts, stops, pauses, snapshots and re-attaches them
through a runtime backend (``rock.runtime``) and talks to each one's agent (``agent_client.py``,
``tcp_stream.py``); ``protocol.py`` is the seam every worker satisfies (this one, the cluster's
client, a proxy's ``attached.py``). Records, kept files of stopped sandboxes, the warm pool and
resource accounting each have a module of their own."""
