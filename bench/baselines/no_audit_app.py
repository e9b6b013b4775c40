"""The service without its audit log: the baseline of `audit_overhead_small_put`.

The same code as `app:app`, started the same way (`gunicorn -c gunicorn.conf.py ...`), except that
`files_app.services.audit.record` is a no-op: every change commits exactly as ours does, without
adding its audit entry to the transaction. The services call it as `audit.record(...)` (a module
attribute looked up at each call), so replacing it here, before `create_app`, reaches them all.
Bench only: never serve this.
"""

from files_app.services import audit


def _no_record(*args, **kwargs) -> None:
    return None


audit.record = _no_record

from files_app import create_app  # noqa: E402 - after the patch, like app.py otherwise

app = create_app()
