"""The ``ordo`` command line (an edge: reads the environment, prints, exits)."""
