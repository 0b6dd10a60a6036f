"""Small operator tools that ship with drpd (run with ``python -m drpd.tools.<name>``)."""
