"""The providers that ship with drpd, written with ``drpd.sdk``.

Each module is also an executable provider file (``#!/usr/bin/env python3``):
the catalog shipped inside the package installs them by uploading the file.
"""
