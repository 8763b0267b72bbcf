"""The one client of the admin, under the SDK, the env clients, the trainer, the CLI and the
agentic jobs: where the admin is (``config``), one async and one blocking transport (``pools``,
over ``transport`` and ``sync_transport``), one decoder of answers and errors (``envelope``), and
the clients built on them (``http``). Nothing else in ``rock`` opens an HTTP client of its own."""
