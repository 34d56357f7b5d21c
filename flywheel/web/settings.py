"""TOML [console], env FLYWHEEL_CONSOLE_<FIELD>: the web console (`flywheel console`, and the one
`flywheel up` serves)."""
from dataclasses import dataclass

from flywheel.schemas.secret import Secret
from flywheel.schemas.setting import setting


@dataclass
class ConsoleSettings:
    enabled: bool = setting(True, doc="`flywheel up` serves the console (false: it does not)")
    host: str = setting("127.0.0.1", doc="address the console listens on; any but loopback needs a token")
    port: int = setting(8470, unit="TCP port", min=1, max=65535, doc="where the console listens")
    token: Secret = setting(Secret(), doc="what a browser must present once (…/login?token=) when the console "
                                          "listens beyond loopback (or token_file); never printed or rendered")
    refresh_seconds: float = setting(10.0, unit="s", min=1, doc="how often the overview redraws itself")
    lookback_hours: float = setting(6.0, unit="h", min=0.1, doc="how far back the overview's plots and "
                                                                "timeline reach")
    lease_seconds: float = setting(300.0, unit="s", min=5, doc="how long a reviewer holds an item they opened; "
                                                              "after it the item goes back to the queue")
