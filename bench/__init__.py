"""Benchmarks of this stack against Debian's C usbip tools, in the lab guest.

``make bench`` (or ``.venv/bin/python -m bench``) boots one guest, runs
:mod:`bench.guest` in it and rewrites the results in ``docs/performance.md``.
"""
