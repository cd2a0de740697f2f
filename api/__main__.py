"""`python -m api`: serve the API with uvicorn on the configured address."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from core.logging import configure_logging
from core.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="api", instance=f"{settings.api_host}:{settings.api_port}")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        # Ours, not uvicorn's: its records go through configure_logging's handler.
        log_config=None,
        log_level=settings.log_level.lower(),
        proxy_headers=settings.trust_forwarded_for,
    )


if __name__ == "__main__":
    main()
