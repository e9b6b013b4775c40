"""tus 1.0: the protocol's grammar (protocol.py). Its requests are served by the API's
blueprint for /v1/files (files_app/api/tus.py)."""
