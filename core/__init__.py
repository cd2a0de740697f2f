"""Process-wide plumbing: settings, database, Redis and logging."""
