"""``python -m flowcache``: the ``flowcache`` command."""

from flowcache.cli import main

main()
