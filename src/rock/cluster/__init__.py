"""Several machines: Ray runs one long-lived worker per node (``node.py``); the admin places each
sandbox on a node by resources and labels (``placement.py``) and reaches the node's worker through
one client (``client.py``) that implements the same interface as the embedded worker. Ray carries
placement and lifecycle, in batches; commands, files and streams go to the node directly over a
TCP relay (``relay.py``) speaking the agent's own framed protocol."""
