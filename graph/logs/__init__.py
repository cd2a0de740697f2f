"""The device logs domain: stored lines and the live feed of new ones."""
