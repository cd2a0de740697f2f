"""Settings from environment variables and `.env`, read once per process.

Each process reads its own class: the API `ApiSettings`, an ingest worker
`WorkerSettings`, both over `CommonSettings` (storage, the bus, logging, this process's
own broker account). `Settings` is the whole platform in one process: what the tests,
the benchmarks and one-process tools use. Names map to upper-case environment variables;
a process ignores the variables of the others.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Refused outside development: a deployment must set its own.
DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-change-me-0123456789"  # noqa: S105
DEVELOPMENT_DEVICE_CREDENTIAL_KEY = "development-only-device-credential-key-0123456789"


class CommonSettings(BaseSettings):
    """What every process reads: where the data and the messages are, and how to log."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    # "json": one JSON object per line, with request/operation ids (core/logging.py).
    log_format: Literal["text", "json"] = "text"

    # Storage and messaging.
    mongodb_url: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_database: str = "iot"
    redis_url: str = "redis://127.0.0.1:6379/0"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    # MQTT_USERNAME/MQTT_PASSWORD are this process's own broker account: the API's is
    # the dynamic-security admin, a worker's is its identity `iot-ingest-<n>`.

    # Live events (pub/sub).
    bus_backend: Literal["redis", "memory"] = "redis"  # "memory": one process only
    bus_reconnect_max_seconds: float = Field(default=10, gt=0)

    # Device MQTT passwords and webhook secrets (unless WEBHOOK_SIGNING_KEY) are derived
    # from DEVICE_CREDENTIAL_KEY (docs/security.md): as secret as every device password
    # together; changing it changes every device's password.
    device_credential_key: SecretStr = SecretStr(DEVELOPMENT_DEVICE_CREDENTIAL_KEY)
    # The workers' shared subscription group; the API grants it in the broker's ACLs.
    ingest_share_group: str = "ingest"  # "" subscribes without $share (one worker only)

    # Webhooks: secrets are derived from this key (unset: a key derived from
    # DEVICE_CREDENTIAL_KEY). Private, loopback and link-local targets are refused
    # unless allowed (SSRF).
    webhook_signing_key: SecretStr | None = None
    webhook_allow_private_networks: bool = False

    # Largest desired and reported twin document (compact JSON, UTF-8) each: over it an
    # updateDesiredState is BAD_USER_INPUT (API), a device's report a counted drop (worker).
    twin_max_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    # Where the links in e-mails point: {PUBLIC_BASE_URL}/console/verify?token=...,
    # /console/reset?token=..., /console/alerts/<id> (README "E-mail"). The worker writes
    # alert e-mails, the API the others: both read it.
    public_base_url: str = "http://localhost:8000"

    def _weak_secrets(self) -> list[str]:
        """What ENVIRONMENT=production refuses: a development or short secret."""
        key = self.device_credential_key.get_secret_value()
        if key == DEVELOPMENT_DEVICE_CREDENTIAL_KEY or len(key) < 32:
            return [
                "DEVICE_CREDENTIAL_KEY must be set to a random value of at least 32 "
                "characters when ENVIRONMENT=production."
            ]
        return []

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> Self:
        if self.environment == "production" and (problems := self._weak_secrets()):
            raise ValueError(" ".join(problems))
        return self


class ApiSettings(CommonSettings):
    """The API process (`python -m api`): HTTP, GraphQL, accounts, devices, firmware."""

    # The ingest workers' broker identities, provisioned by the API (services/broker_*):
    # this name with -1, -2, ... appended; MQTT_INGEST_PASSWORD is their shared password.
    mqtt_ingest_username: str = "iot-ingest"
    mqtt_ingest_password: SecretStr | None = None
    # Ingest workers the API keeps a broker identity for: <MQTT_INGEST_USERNAME>-1 .. -N,
    # each its own username and bound client id (a worker's INGEST_CLIENT_ID).
    ingest_workers: int = Field(default=2, ge=0, le=1000)
    # This API process's name at the broker (client ids iot-api-<name>, iot-api-<name>-ota);
    # unique per process. Empty: the host name (each container's own).
    api_instance: str = ""
    # Who keeps device identities at the broker: "dynsec" (Mosquitto's dynamic-security
    # plugin, written by the API) or "http" (the broker asks /broker/auth/...: RabbitMQ,
    # EMQX; the API writes nothing to the broker, and needs it for no identity change).
    broker_identities: Literal["dynsec", "http"] = "dynsec"
    # Brokers that ask over HTTP (RabbitMQ, EMQX; docs/brokers.md): the password they
    # present (HTTP Basic) to /broker/auth/...; unset, those endpoints are not served.
    broker_auth_secret: SecretStr | None = None
    # The one virtual host devices and services may use on RabbitMQ.
    broker_auth_vhost: str = "/"
    # RabbitMQ's management API (http://rabbitmq:15672) and an administrator there: when
    # set, a rotated or deleted device's open connections are closed through it.
    broker_management_url: str = ""
    broker_management_username: str = ""
    broker_management_password: SecretStr | None = None

    # HTTP.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    cors_origins: list[str] = Field(default_factory=list)
    # Proxies whose X-Forwarded-For/-Proto uvicorn applies (comma-separated addresses or
    # networks, as uvicorn's --forwarded-allow-ips). Empty: none, the peer is the client.
    forwarded_allow_ips: str = ""
    # Largest non-multipart request body, refused (413) before anything parses it.
    http_max_body_bytes: int = Field(default=1024 * 1024, ge=16 * 1024)
    # Largest WebSocket message (GraphQL operations are small; uploads are HTTP).
    # uvicorn's default is 16 MiB, buffered per connection before anything checks it.
    ws_max_message_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)

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
    # Login failures of one (e-mail, client address) pair before it is locked out: the
    # first lockout lasts LOGIN_LOCKOUT_SECONDS, each next one (after one more failure)
    # twice as long, up to LOGIN_LOCKOUT_MAX_SECONDS. Other addresses are not affected.
    login_failures_per_email: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=60, ge=1)
    login_lockout_max_seconds: int = Field(default=3600, ge=1)
    login_failures_per_address: int = Field(default=30, ge=1)
    registrations_per_address: int = Field(default=10, ge=1)
    rate_limit_window_seconds: int = Field(default=15 * 60, ge=1)
    # false: register answers FORBIDDEN. The first ADMIN comes from `python -m api.admin`
    # (outside development and test nobody becomes ADMIN by registering first).
    registration_open: bool = True

    # Per-user quotas (RATE_LIMITED beyond them). WebSockets and subscriptions are
    # counted per API process.
    devices_per_user_max: int = Field(default=1000, ge=1)
    credential_rotations_per_device_hour: int = Field(default=30, ge=1)
    credential_rotations_per_user_hour: int = Field(default=300, ge=1)
    websockets_per_user_max: int = Field(default=20, ge=1)
    subscriptions_per_user_max: int = Field(default=200, ge=1)

    # GraphQL limits.
    graphql_max_depth: int = Field(default=10, ge=2)
    graphql_max_aliases: int = Field(default=30, ge=1)
    graphql_max_tokens: int = Field(default=2000, ge=50)
    graphql_max_cost: int = Field(default=5000, ge=10)
    # All of one query's MongoDB reads share this budget (each is sent with maxTimeMS).
    mongodb_query_max_time_ms: int = Field(default=10_000, ge=1)
    # Longest query text, refused (QUERY_TOO_COMPLEX) before it is parsed or cached.
    graphql_max_query_chars: int = Field(default=20_000, ge=1000)
    # Unset: on in development and test, off in production (_exposure_defaults).
    graphql_introspection: bool = True
    graphiql: bool = True
    page_size_default: int = Field(default=20, ge=1)
    page_size_max: int = Field(default=100, ge=1)

    # GraphQL subscriptions: events buffered per subscription.
    # Events buffered per subscription; a subscriber that falls this far behind is closed.
    subscription_buffer: int = Field(default=256, ge=1, le=100_000)
    aggregate_max_buckets: int = Field(default=10_000, ge=1)

    # Dashboards: a config's size (compact JSON, UTF-8) and how many one user may keep
    # (the contract's Dashboards query has no pagination, so the list must stay bounded).
    dashboard_config_max_bytes: int = Field(default=64 * 1024, ge=1024)
    dashboards_per_user_max: int = Field(default=100, ge=1)

    # A device's `attributes` (free JSON, server-side only): its size as compact UTF-8 JSON.
    device_attributes_max_bytes: int = Field(default=16 * 1024, ge=256)

    # Lines on devices/{id}/logs are kept this long after their timestamp: a TTL index on
    # real MongoDB (models/device_logs.py), set to this value by each API process at start.
    device_log_retention_days: int = Field(default=14, ge=1, le=3650)

    # POST /devices/{id}/telemetry (ingest/http_intake.py), per API process: requests
    # handled at once (beyond: 503 with Retry-After, before the body is read), and how
    # long one waits for its body (beyond: 408) and for its readings to be stored
    # (beyond: 503).
    http_ingest_concurrency: int = Field(default=64, ge=1, le=10_000)
    http_ingest_timeout_seconds: float = Field(default=5, gt=0, le=60)

    # API keys: keys one user may hold (expired ones not counted; CONFLICT beyond); a
    # key's lastUsedAt is written at most this often (not on every request).
    api_keys_per_user_max: int = Field(default=20, ge=1, le=1000)
    api_key_last_used_interval_seconds: int = Field(default=60, ge=1, le=86400)
    # Audit entries are deleted this long after they were written: a TTL index on real
    # MongoDB (models/audit.py), set to this value by each API process at start.
    audit_retention_days: int = Field(default=365, ge=1, le=36500)

    # Device commands (docs/devices.md#commands): largest sendCommand `params`, as compact
    # JSON text (over it: BAD_USER_INPUT); commands waiting (QUEUED) per device, one more
    # is refused (RATE_LIMITED); how often each API process expires overdue commands and
    # sends the queued ones of ONLINE devices whose status event it missed.
    command_params_max_bytes: int = Field(default=8192, ge=2, le=64 * 1024)
    commands_queued_per_device_max: int = Field(default=1000, ge=1)
    command_sweep_seconds: float = Field(default=1.0, gt=0, le=60)

    # requestPasswordReset: per client address (beyond: RATE_LIMITED) and per e-mail address
    # (beyond: the same `true`, but no e-mail: the answer reveals nothing), per window.
    password_resets_per_address: int = Field(default=10, ge=1)
    password_resets_per_email: int = Field(default=3, ge=1)
    # E-mail (README "E-mail"): every mail goes through the outbox (MongoDB), sent by a
    # background task of each API process. No SMTP_HOST: development and test log the
    # links instead, production sends nothing (and warns at start).
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    # "starttls": upgrade a plain connection (587); "tls": TLS from the start (465).
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # The whole of one delivery attempt (connect, TLS, login, send), however slow the server.
    smtp_timeout_seconds: float = Field(default=30, gt=0, le=600)
    # The From header ("IoT Platform <noreply@example.com>").
    email_sender: str = "IoT Platform <noreply@localhost>"
    # How often each API process looks for mail due (a mail queued by this process
    # wakes its sender at once).
    email_outbox_poll_seconds: float = Field(default=2, gt=0, le=60)
    # Attempts per mail; between them, exponential waits from the first to the longest.
    email_max_attempts: int = Field(default=8, ge=1, le=50)
    email_retry_first_seconds: float = Field(default=10, gt=0)
    email_retry_max_seconds: float = Field(default=900, gt=0)
    # How often each API process looks for alert reminders due (docs/alerts.md).
    email_reminder_check_seconds: float = Field(default=60, gt=0, le=3600)
    # How long the link of a verification e-mail works (a reset link: one hour).
    email_verification_ttl_hours: int = Field(default=48, ge=1, le=24 * 30)

    # --- alerts (docs/alerts.md)
    alert_rules_per_device_max: int = Field(default=50, ge=1, le=1000)

    # --- firmware / OTA (docs/ota.md)
    # The largest image uploadFirmware accepts, enforced while it streams into GridFS.
    firmware_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=2**31)
    # Ed25519 private key that signs images: base64 of the raw 32-byte key, or PEM
    # (PKCS#8), here or in a file. Only the API needs it; it refuses to start in
    # production without one, and in development generates .data/firmware-signing.key.
    firmware_signing_key: SecretStr | None = None
    firmware_signing_key_file: str | None = None
    # Where devices download images ("https://iot.example.com"). Empty: offers carry the
    # path only (/firmware/<id>/download), resolved against the API address the device knows.
    firmware_base_url: str = ""
    # Rollout defaults; startFirmwareUpdate may set each per rollout.
    firmware_devices_per_minute: int = Field(default=60, ge=1, le=60_000)
    firmware_device_timeout_seconds: int = Field(default=30 * 60, ge=1)
    firmware_max_failure_rate: float = Field(default=0.2, ge=0, le=1)
    firmware_failure_min_devices: int = Field(default=3, ge=1)
    firmware_update_max_devices: int = Field(default=1000, ge=1, le=10_000)
    # How often each API process's dispatcher looks for due work.
    firmware_dispatch_poll_seconds: float = Field(default=0.5, gt=0, le=60)

    # --- data lifecycle (docs/data.md)
    # Raw readings (and device logs) older than this are deleted; a device may shorten it
    # (retentionDays), never lengthen it. Real MongoDB expires them by the collection's
    # TTL as well; the API's background deleter enforces it everywhere.
    reading_retention_days: int = Field(default=30, ge=1, le=20_000)
    # How often each API process tries to start a deletion pass (one at a time platform-wide,
    # under a Redis lease), documents per deletion batch and the rest between batches.
    retention_interval_seconds: float = Field(default=600, gt=0)
    retention_batch_size: int = Field(default=1000, ge=1, le=100_000)
    retention_batch_pause_ms: float = Field(default=100, ge=0, le=60_000)
    # Rollups (count/min/max/sum per minute and per hour) outlive raw readings: they answer
    # aggregates over ranges the raw data no longer covers. A device's retentionDays does
    # not shorten them; deleting the device deletes them.
    rollup_minute_retention_days: int = Field(default=90, ge=1, le=20_000)
    rollup_hour_retention_days: int = Field(default=730, ge=1, le=20_000)
    # Largest POST /import/readings body (HTTP_MAX_BODY_BYTES does not apply to it).
    import_max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024, le=2**31)

    @model_validator(mode="before")
    @classmethod
    def _exposure_defaults(cls, data: Any) -> Any:
        # The schema and the IDE are shown outside production unless a setting says so.
        if isinstance(data, dict) and data.get("environment") == "production":
            data = {"graphql_introspection": False, "graphiql": False, **data}
        return data

    def _weak_secrets(self) -> list[str]:
        secret = self.jwt_secret.get_secret_value()
        weak = secret == DEVELOPMENT_JWT_SECRET or len(secret) < 32
        return [
            *(
                [
                    "JWT_SECRET must be set to a random value of at least 32 characters "
                    "when ENVIRONMENT=production (e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'`)."
                ]
                if weak
                else []
            ),
            *super()._weak_secrets(),
        ]


class WorkerSettings(CommonSettings):
    """An ingest worker (`python -m ingest`): MQTT consumption, storage, alerts, webhooks."""

    # Ingest worker.
    # Worker n's is `ingest-<n>`, bound to its identity `iot-ingest-<n>`; stable: the broker
    # keeps its session by it.
    ingest_client_id: str = "ingest-1"
    ingest_batch_size: int = Field(default=100, ge=1, le=10_000)
    ingest_batch_delay_ms: float = Field(default=20, ge=0)
    # Messages in flight, unacknowledged: also the MQTT 5 Receive Maximum.
    ingest_queue_size: int = Field(default=1000, ge=1, le=65535)
    ingest_session_expiry_seconds: int = Field(default=24 * 3600, ge=0)
    ingest_dedup_window_seconds: int = Field(default=24 * 3600, ge=60)
    ingest_device_cache_seconds: float = Field(default=10, ge=0)
    ingest_status_flush_seconds: float = Field(default=2, gt=0)
    ingest_offline_after_seconds: float = Field(default=120, gt=0)
    ingest_reconnect_max_seconds: float = Field(default=10, gt=0)
    # Per-device token bucket: messages a second and burst; beyond, dropped (rate_limited).
    ingest_device_rate_per_second: float = Field(default=20, ge=0)  # 0: no limit
    ingest_device_burst: int = Field(default=100, ge=1)
    # Where deliveries come from (ingest/source.py): `mqtt`, the broker at MQTT_HOST with
    # shared subscriptions; `amqp`, RabbitMQ's quorum queues at AMQP_URL (ingest/amqp.py,
    # docs/brokers.md), logged in as MQTT_USERNAME / MQTT_PASSWORD unless the URL says.
    # Several URLs, comma-separated (a cluster's nodes): each reconnection the next one.
    ingest_source: Literal["mqtt", "amqp"] = "mqtt"
    amqp_url: SecretStr = SecretStr("amqp://127.0.0.1:5672/")
    # Messages a worker holds unacknowledged, per queue (AMQP basic.qos).
    amqp_prefetch: int = Field(default=500, ge=1, le=65535)
    # The worker's Prometheus /metrics; keep it off public interfaces. Port 0: not served.
    ingest_metrics_host: str = "127.0.0.1"
    ingest_metrics_port: int = Field(default=9101, ge=0, le=65535)

    # --- ingest performance
    # After each MQTT read the worker rests this long before the next one, so a busy
    # stream is handled in batches (CPU per message) at the price of up to this much
    # latency on the live path. 0: read as soon as anything arrives.
    ingest_read_pause_ms: float = Field(default=5, ge=0, le=1000)

    # --- alerts (docs/alerts.md)
    # A worker reloads a device's rules on every change notice (and all of them when
    # its Redis subscription comes back); this reload is only the safety net.
    alert_rule_refresh_seconds: float = Field(default=300, gt=0)
    # Raise/clear work waiting in a worker; full means dropped and counted, never waiting.
    alert_queue_size: int = Field(default=10_000, ge=10, le=1_000_000)
    alert_no_data_check_seconds: float = Field(default=5, gt=0)
    # Streaming anomaly detection: EWMA mean/variance per device and metric.
    anomaly_detection: bool = True
    anomaly_alpha: float = Field(default=0.05, gt=0, lt=1)
    anomaly_z_threshold: float = Field(default=5.0, gt=0)
    anomaly_warmup: int = Field(default=30, ge=2)
    # The spread never counts as smaller than this fraction of |mean| (or the absolute floor).
    anomaly_min_std_ratio: float = Field(default=0.01, ge=0)
    anomaly_min_std: float = Field(default=1e-6, ge=0)
    anomaly_max_series: int = Field(default=200_000, ge=1)
    # One device's series; a new metric beyond it evicts that device's least recently used.
    anomaly_max_metrics_per_device: int = Field(default=64, ge=1)
    anomaly_alerts: bool = True
    # At most one anomaly alert per device per interval, across workers.
    anomaly_alert_interval_seconds: float = Field(default=300, ge=0)
    anomaly_alert_severity: Literal["INFO", "WARNING", "CRITICAL"] = "WARNING"

    # Webhook delivery.
    # The whole of one attempt (resolve, connect, send, read), however the receiver trickles.
    webhook_timeout_seconds: float = Field(default=5, gt=0)
    # Response bytes read per attempt (the status decides; the body is read, then dropped).
    webhook_response_max_bytes: int = Field(default=4096, ge=0, le=1024 * 1024)
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    webhook_retry_base_seconds: float = Field(default=1, gt=0)
    webhook_outbox_size: int = Field(default=1000, ge=1)
    webhook_concurrency: int = Field(default=4, ge=1, le=100)
    # One owner's share: requests in flight and deliveries waiting (beyond: owner_full).
    webhook_concurrency_per_owner: int = Field(default=1, ge=1, le=100)
    webhook_outbox_per_owner: int = Field(default=100, ge=1)


class Settings(ApiSettings, WorkerSettings):
    """The whole platform in one process: tests, benchmarks, one-process tools."""


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    """The API process's settings, built on first use."""
    return ApiSettings()


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    """An ingest worker's settings, built on first use."""
    return WorkerSettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Every setting, for tools that act as more than one process."""
    return Settings()
