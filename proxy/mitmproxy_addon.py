"""Load baton into a mitmproxy you already run.

    mitmdump -s "$(baton addon-path)" --set baton_cassette=out.cassette

mitmproxy's script loader looks for a module-level ``addons`` list; without
one a script silently does nothing.
"""

from proxy.recorder import Recorder

addons = [Recorder()]
