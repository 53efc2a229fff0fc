"""Subscriber lists: addresses (checking, normalising), import formats, importing and exporting.

SQL stays in ``newsletter.store.subscribers``; this package reads and writes files and decides
what a row means.
"""
