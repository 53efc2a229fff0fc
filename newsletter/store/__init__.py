"""The only place SQL lives. Modules: ``db`` (open, migrate, atomic), ``schema`` (tables), and one
module of queries per table group (``papers``, ``subscribers``, ``issues``, ``deliveries``)."""

from newsletter.store.db import Store, open_store, utcnow

__all__ = ["Store", "open_store", "utcnow"]
