"""The REST API (FastAPI): :func:`ordo.api.app.create_app`."""
