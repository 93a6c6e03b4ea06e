"""``baton addon-path``: where baton's mitmproxy script is, for ``mitmdump -s``."""

from __future__ import annotations

import click

__all__ = ["addon_path"]


@click.command("addon-path")
def addon_path() -> None:
    """Print the path of baton's mitmproxy script, for ``mitmdump -s``.

    \b
    Example:
      mitmdump -s "$(baton addon-path)" --set baton_cassette=api.cassette
    """
    from baton.proxy import mitmproxy_addon

    click.echo(mitmproxy_addon.__file__)
