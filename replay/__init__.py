"""The replay and drift engine, pure Python, without mitmproxy.

matching (named matchers and match keys), index (match key -> queue of
recorded answers), options (what the CLI, the plugin and the addon share),
server (the fast replay server), comparison (the one deepdiff user), drift,
resend and report. Import what you need from its module:
``from baton.replay.index import Index``.
"""

__all__: list[str] = []
