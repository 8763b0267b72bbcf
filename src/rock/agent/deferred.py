"""What an inline op handler returns when it will call ``req.reply()`` later: a sentinel the
server compares by identity, below the server and the handlers that return it."""


class Deferred:
    """The type of ``DEFERRED``; there is one instance."""

    __slots__ = ()

    def __repr__(self):
        return "DEFERRED"


DEFERRED = Deferred()
