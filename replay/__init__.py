"""The replay and drift engine (matching, comparison, reports): pure Python, no mitmproxy.

Built by the replay and drift work; empty until then.
"""

__all__: list[str] = []
