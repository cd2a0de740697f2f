"""The one settings object: environment variables and `.env`, read once."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Refused outside development: a deployment must set its own.
DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-change-me-0123456789"  # noqa: S105


class Settings(BaseSettings):
    """Every knob of the platform. Names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"

    # Storage and messaging.
    mongodb_url: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_database: str = "iot"
    redis_url: str = "redis://127.0.0.1:6379/0"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None

    # HTTP.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    cors_origins: list[str] = Field(default_factory=list)
    # Client address from X-Forwarded-For only when a trusted proxy sets it.
    trust_forwarded_for: bool = False

    # Tokens.
    jwt_secret: SecretStr = SecretStr(DEVELOPMENT_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "iotplatform"
    jwt_audience: str = "iotplatform-api"
    device_token_audience: str = "device"  # noqa: S105 - an audience, not a secret
    access_token_ttl_seconds: int = Field(default=15 * 60, gt=0)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    device_token_ttl_seconds: int = Field(default=365 * 24 * 3600, gt=0)

    # Password hashing (argon2id). Tests lower the cost; production keeps the defaults.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=65536, ge=8)

    # Abuse limits: attempts per window, per e-mail and per client address.
    login_failures_per_email: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=30, ge=1)
    registrations_per_address: int = Field(default=10, ge=1)
    rate_limit_window_seconds: int = Field(default=15 * 60, ge=1)

    # GraphQL limits.
    graphql_max_depth: int = Field(default=10, ge=2)
    graphql_max_aliases: int = Field(default=30, ge=1)
    graphql_max_tokens: int = Field(default=2000, ge=50)
    graphql_max_cost: int = Field(default=5000, ge=10)
    graphql_introspection: bool = True
    page_size_default: int = Field(default=20, ge=1)
    page_size_max: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> Self:
        if self.environment == "production":
            secret = self.jwt_secret.get_secret_value()
            if secret == DEVELOPMENT_JWT_SECRET or len(secret) < 32:
                raise ValueError(
                    "JWT_SECRET must be set to a random value of at least 32 characters "
                    "when ENVIRONMENT=production (e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'`)."
                )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return Settings()
