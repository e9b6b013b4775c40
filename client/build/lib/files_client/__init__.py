"""`files`: the files service's command-line client (its own package: it needs none of the server's)."""

__version__ = "0.1.0"
