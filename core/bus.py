"""Moved to live.bus. services/live.py still imports these three names from here (another
change owns that file); this alias goes once it imports live.bus."""

from live.bus import Bus, OverflowCallback, Subscription

__all__ = ["Bus", "OverflowCallback", "Subscription"]
