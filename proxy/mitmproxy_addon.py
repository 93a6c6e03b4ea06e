"""Load baton into a mitmproxy you already run.

    mitmdump -s "$(baton addon-path)" --set baton_cassette=out.cassette      # record
    mitmdump -s "$(baton addon-path)" --set baton_replay=in.cassette \\
             --set connection_strategy=lazy                                  # replay
    mitmdump -s "$(baton addon-path)" --set baton_contract_spec=openapi.yaml # check

mitmproxy's script loader looks for a module-level ``addons`` list; without
one a script silently does nothing. Each addon stays idle until its own
option names a cassette.
"""

from baton.proxy.contract_addon import LiveContractCheck
from baton.proxy.recorder import Recorder
from baton.proxy.replayer import Replayer

addons = [Replayer(), Recorder(), LiveContractCheck()]
