"""grip-sync: push event registration data into the Grip matchmaking platform."""

from __future__ import annotations

__version__ = "0.1.0"
