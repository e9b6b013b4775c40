"""tus 1.0 over the same upload sessions: the header grammar (protocol.py) and the handler
(handler.py) that the API's views call; no blueprint and no hooks of its own."""
