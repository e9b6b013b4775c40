"""gunicorn settings for `make serve`: the files service's own gthread worker on FILES_HOST:FILES_PORT.

The worker (files_app.serving.FilesWorker) reads each request's headers and the start of its body
in its event loop, so idle and slow connections (FILES_MAX_CONNECTIONS per worker) hold no thread;
then a request has one of FILES_THREADS threads to itself, so a slow upload never waits for another
to finish. It cuts off headers that take longer than FILES_HEADER_TIMEOUT and bodies or readers that
stall for FILES_CLIENT_TIMEOUT, and answers gunicorn's own protocol errors in the API's JSON error
shape. Why this model and not
gevent: README, "Serving model". Each worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR,
made here for each start, and /metrics adds them up (files_app/metrics.py).
"""

import atexit
import os
import shutil
import tempfile


def _metrics_dir() -> str:
    """A fresh private directory per server start, where each worker writes its metrics for /metrics
    to add up (files_app/metrics.py): counters of an earlier run or of another server never mix in.
    A reload of this file (SIGHUP) keeps the master's own; the master removes it when it exits."""
    master = os.getpid()
    made = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(made).startswith(f"files-metrics-{master}-") and os.path.isdir(made):
        return made
    _forget_dead_servers()
    made = tempfile.mkdtemp(prefix=f"files-metrics-{master}-")  # mode 0700
    # Workers are forked with this handler too: only the master's exit removes the directory.
    atexit.register(lambda: os.getpid() == master and shutil.rmtree(made, ignore_errors=True))
    return made


def _forget_dead_servers() -> None:
    """A master that was killed (SIGKILL, OOM) could not remove its directory: remove those of
    masters that no longer run."""
    import glob

    for left in glob.glob(os.path.join(tempfile.gettempdir(), "files-metrics-*-*")):
        pid = os.path.basename(left).split("-")[2]
        try:
            if pid.isdigit() and os.stat(left).st_uid == os.getuid():
                os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(left, ignore_errors=True)
        except OSError:
            pass  # gone meanwhile, or alive as another user's: leave it


# Before files_app is imported: prometheus_client chooses multiprocess mode when it is first imported.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir()

from files_app.config import load_settings  # noqa: E402 - after the metrics directory is set

_settings = load_settings()

bind = f"{_settings['FILES_HOST']}:{_settings['FILES_PORT']}"
worker_class = "files_app.serving.FilesWorker"
workers = _settings["FILES_WORKERS"]
threads = _settings["FILES_THREADS"]

def _connections_allowed(wanted: int) -> int:
    """FILES_MAX_CONNECTIONS, within what the process may open: the soft limit on descriptors is
    raised to the hard one, and each thread at work may hold a file of its own besides its socket."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    room = (hard if hard != resource.RLIM_INFINITY else 1 << 20) - threads - 256
    return max(min(wanted, room), threads + 1)


# Idle, slow and kept-alive connections wait in the event loop without a thread (files_app/serving.py).
worker_connections = _connections_allowed(_settings["FILES_MAX_CONNECTIONS"])
# Long uploads are fine: gthread's heartbeat does not wait for requests to finish.
timeout = 60
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190  # keys are up to 1024 bytes, percent-encoded up to 3x
accesslog = "-"
# Where each upload request started and where it left the session: the log of durable offsets.
access_log_format = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                     'offset=%({upload-offset}i)s->%({upload-offset}o)s')
# gunicorn's control socket lives at one path per user: two servers on one host would fight over it.
control_socket_disable = True


def _refuse_if_exposed(addresses):
    import sys

    from files_app import create_app
    from files_app.auth import refuse_open_exposure

    reason = refuse_open_exposure(create_app(), addresses)
    if reason:
        print(f"files: {reason}", file=sys.stderr, flush=True)
        sys.exit(2)


def on_starting(server):
    """Before anything binds the port: create or upgrade the schema, once, in the master; and
    refuse to serve an open service on anything but loopback, by the addresses gunicorn was told
    to bind, whatever told it (this file, -b, GUNICORN_CMD_ARGS). This only says so at once: the
    app itself refuses peers off loopback while it is open (files_app._serve_open_only_to_loopback),
    however it is served, with this file or without."""
    from files_app import create_app
    from files_app.schema import upgrade_database

    upgrade_database(create_app())
    _refuse_if_exposed(list(server.cfg.bind))
    server.log.info("metrics: the workers write theirs in %s", os.environ["PROMETHEUS_MULTIPROC_DIR"])


def when_ready(server):
    """Once bound, before any worker serves: the same check on the sockets really listening
    (inherited ones included)."""
    import socket

    addresses = []
    for listener in server.LISTENERS:
        name = listener.sock.getsockname()
        if listener.sock.family == socket.AF_UNIX:
            addresses.append(f"unix:{name}")
        elif listener.sock.family == socket.AF_INET6:
            addresses.append(f"[{name[0]}]:{name[1]}")
        else:
            addresses.append(f"{name[0]}:{name[1]}")
    _refuse_if_exposed(addresses)


def post_worker_init(worker):
    """Each worker collects garbage every FILES_GC_INTERVAL seconds (see files_app.start_periodic_gc),
    scrubs every FILES_SCRUB_INTERVAL seconds when it is its turn (files_app.start_periodic_scrub),
    and delivers webhook events (files_app.services.webhooks.start_delivery: workers never deliver
    the same event at once)."""
    from files_app import start_periodic_gc, start_periodic_scrub
    from files_app.services.webhooks import start_delivery

    start_periodic_gc(worker.wsgi)
    start_periodic_scrub(worker.wsgi)
    start_delivery(worker.wsgi)


def child_exit(server, worker):
    """A worker is gone (stopped, killed, restarted): its live gauges (requests in progress) go with
    it; its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
