"""The notifications domain: alert e-mail preferences."""
