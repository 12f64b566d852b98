"""The web UI: pages served by ``ordo server`` beside the API (see :mod:`ordo.ui.site`)."""
