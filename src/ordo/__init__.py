"""ordo: a durable execution engine for flows of shell, python, sql and http tasks.

Kept empty of imports on purpose: ``import ordo`` (and the ``ordo`` command, and every
python task host) must start fast. User code reads ``ordo.this``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
