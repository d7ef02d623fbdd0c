"""``python -m flowcache.cli``: the ``flowcache`` command."""

from flowcache.cli import main

main()
