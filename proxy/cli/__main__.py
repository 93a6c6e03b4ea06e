"""``python -m baton.proxy.cli``: the same as the ``baton`` console script."""

from baton.proxy.cli import main

main()
