"""The firmware domain: images, rollouts and their live progress (ADMIN operations)."""
