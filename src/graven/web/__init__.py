"""The web UI: a try-it-yourself demo, an investigation console, a live tail and "how it works".

``create_web_app(trail, viewer=...)`` serves an application's own log; ``create_web_app(demo=True)``
serves the demo's sandbox log (``graven demo``). Templates and assets ship inside the package.
"""

from graven.web.app import DEMO_VISITOR, Gate, Viewer, create_web_app
from graven.web.sandbox import Sandbox

__all__ = ["DEMO_VISITOR", "Gate", "Sandbox", "Viewer", "create_web_app"]
