"""Entry point: `gunicorn app:app` and `flask --app app ...`."""

from files_app import create_app

app = create_app()
