"""interconnect-testbed: emulated clouds joined by direct interconnects or transit."""

__version__ = "0.1.0"
