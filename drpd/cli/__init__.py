"""drpcli: DRP's command-line client, reimplemented over drpd's REST API.

It talks HTTP only (through :mod:`drpd.client`) and never imports the
server's parts. :mod:`.main` is the entry point, :mod:`.registry` the
command table; each other module registers one family of commands.
"""
