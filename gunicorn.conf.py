"""gunicorn settings for `make serve`: gthread workers on FILES_HOST:FILES_PORT."""

from files_app.config import load_settings

_settings = load_settings()

bind = f"{_settings['FILES_HOST']}:{_settings['FILES_PORT']}"
worker_class = "gthread"
workers = _settings["FILES_WORKERS"]
threads = _settings["FILES_THREADS"]
# Long uploads are fine: gthread's heartbeat does not wait for requests to finish.
timeout = 60
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190  # keys are up to 1024 bytes, percent-encoded up to 3x
accesslog = "-"
# gunicorn's control socket lives at one path per user: two servers on one host would fight over it.
control_socket_disable = True


def on_starting(server):
    """Before anything binds the port: create or upgrade the schema, once, in the master; and
    refuse to serve an open service on anything but loopback."""
    import sys

    from files_app import create_app
    from files_app.auth import refuse_open_exposure
    from files_app.schema import upgrade_database

    app = create_app()
    upgrade_database(app)
    reason = refuse_open_exposure(app)
    if reason:
        print(f"files: {reason}", file=sys.stderr, flush=True)
        sys.exit(2)


def post_worker_init(worker):
    """Each worker collects garbage every FILES_GC_INTERVAL seconds (see files_app.start_periodic_gc)."""
    from files_app import start_periodic_gc

    start_periodic_gc(worker.wsgi)
