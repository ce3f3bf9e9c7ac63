"""interconnect-testbed: emulated clouds joined by direct interconnects or transit."""

import os as _os

__version__ = "0.1.0"

# topologies/ and scenarios/ live beside this package in a checkout (the design
# card's layout) and are installed as testbed.topologies / testbed.scenarios.
# When the checkout itself is imported (tests and helper processes put it first
# on PYTHONPATH), let the package find them there too.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "topologies")) and \
        _os.path.isfile(_os.path.join(_checkout, "topologies", "__init__.py")):
    __path__.append(_checkout)  # noqa: F821 - the package's own __path__
