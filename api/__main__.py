"""`python -m api`: serve the API with uvicorn on the configured address."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from core.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        proxy_headers=settings.trust_forwarded_for,
    )


if __name__ == "__main__":
    main()
