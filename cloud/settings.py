"""Typed settings of the cloud service, read once in ``main`` and passed in."""

from __future__ import annotations

import secrets
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.pin import PIN_MAX_LEN

_PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev", "placeholder"})
MIN_SECRET_LEN = 32
# A 4-digit PIN falls to 10,000 guesses, a few hundred a day past the keypad's lockout;
# the top is the lock's (protocol.pin: 11 and 12 digits are offline PINs)
PIN_LENGTH_MIN = 6


class CloudSettings(BaseSettings):
    """Everything the cloud process needs; environment variables ``DENEN_CLOUD_*``."""

    model_config = SettingsConfigDict(env_prefix="DENEN_CLOUD_", extra="forbid")

    database_url: str = "sqlite:///./denen.db"
    mqtt_enabled: bool = True
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_client_id: str = "denen-cloud-1"
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    # One worker: a plain subscription in a persistent session, which Mosquitto 2.0 keeps
    # across a broker restart. Several workers: a shared subscription splits the load, but
    # Mosquitto 2.0 drops an offline member's shared subscription when it restarts, so
    # events published before the workers reconnect are lost (use a broker that persists
    # shared sessions, such as EMQX, for that setup).
    mqtt_shared_subscription: bool = False
    # GET /metrics asks for "Authorization: Bearer <token>" (Prometheus' bearer_token);
    # required outside dev, where unset leaves /metrics open (checked below)
    metrics_token: str | None = Field(default=None, repr=False)
    # Mutual TLS to the broker (files from `denen provision ca init`: ca.crt, cloud.crt/.key)
    mqtt_tls_ca: Path | None = None
    mqtt_tls_cert: Path | None = None
    mqtt_tls_key: Path | None = None
    # Enrollment: the cloud holds the issuing CA (see cloud/fleet/enrollment.py)
    ca_cert_path: Path | None = None
    ca_key_path: Path | None = None
    crl_path: Path | None = None
    broker_acl_path: Path | None = None
    broker_pid_file: Path | None = None
    enroll_mqtt_host: str | None = None  # what gateways dial; defaults to mqtt_host
    # Lock pairing (cloud/gym/lock_keys.py): the X25519 key pair pairings seal a lock's PIN
    # key and offline secret to (PEM, 0600; made on the first start). Unset: the cloud
    # publishes no pairing key and takes no lock keys over MQTT
    pairing_key_path: Path | None = None
    enroll_mqtt_port: int = Field(default=8883, ge=1, le=65535)
    enrollment_token_ttl_s: int = Field(default=24 * 3600, ge=60)
    gateway_cert_days: int = Field(default=365, ge=1, le=3650)
    pin_margin_before_s: int = Field(default=900, ge=0)
    pin_margin_after_s: int = Field(default=900, ge=0)
    pin_length: int = 6  # keypad PIN digits, PIN_LENGTH_MIN..PIN_MAX_LEN (checked below)
    # Offline PINs (docs/offline-pins.md): issued instead of a slot PIN when the site's
    # gateway is offline, or has not been heard from for gateway_silent_after_s (0: never
    # judged by silence), or the lock cannot be loaded before the window starts
    offline_pins_enabled: bool = True
    offline_pin_max_hours: int = Field(default=24, ge=1, le=72)
    gateway_silent_after_s: int = Field(default=0, ge=0)
    timezone: str = "Asia/Tokyo"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = Field(default="", repr=False)
    dev: bool = False
    # Mail delivery over SMTP; no host: mails stay in the outbox (the demo's /mail page)
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str = "Denen <no-reply@denen.invalid>"
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_starttls: bool = True
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    mail_poll_s: float = Field(default=10.0, gt=0)
    mail_retry_base_s: int = Field(default=30, ge=1)
    mail_retry_cap_s: int = Field(default=3600, ge=1)
    # Reminders, no-shows and the post-visit survey (a periodic job in every worker)
    notifications_enabled: bool = True
    notifications_poll_s: float = Field(default=60.0, gt=0)
    reminder_lead_s: int = Field(default=24 * 3600, ge=0)
    survey_delay_s: int = Field(default=3600, ge=0)
    # Booking (cloud/gym): a new booking is confirmed from its mail within this time, else
    # it lapses (confirmations.py); anonymous bookings per client address and per facility
    # in an hour (booking_limits.py), remembering this many addresses
    booking_confirm_ttl_s: int = Field(default=30 * 60, ge=60)
    booking_confirm_poll_s: float = Field(default=60.0, gt=0)
    booking_limit_per_address: int = Field(default=10, ge=1)
    booking_limit_per_facility: int = Field(default=60, ge=1)
    booking_limit_addresses: int = Field(default=10_000, ge=1)
    # reverse proxies (JSON list of addresses or networks, e.g. ["10.0.0.0/8"]) whose
    # X-Forwarded-For names the client (login throttle, booking and check-in limits) and
    # whose X-Forwarded-Proto makes cookies Secure; empty: the TCP peer is the client
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # Clinic (cloud/clinic): the key behind each site's daily card-tag key (empty: derived
    # from secret_key); how often announcement expiry and the day change are checked
    clinic_card_secret: str = Field(default="", repr=False)
    clinic_poll_s: float = Field(default=5.0, gt=0)
    clinic_checkin_opens_s: int = Field(default=30 * 60, ge=0)  # before an appointment
    # Fleet (cloud/fleet, docs in cloud/fleet/*.py): alerts go to the on-call address (none:
    # only the inbox); the periodic pass judges silence, missed syncs, expiries, rollouts
    fleet_oncall_email: str | None = None
    fleet_poll_s: float = Field(default=15.0, gt=0)
    fleet_telemetry_interval_s: float = Field(default=60.0, gt=0)  # unless the config says
    fleet_heartbeat_misses: float = Field(default=2.0, ge=1)
    fleet_sync_interval_s: int = Field(default=12 * 3600, ge=60)
    fleet_sync_grace_s: int = Field(default=3600, ge=0)
    fleet_sample_every_s: int = Field(default=3600, ge=1)
    fleet_sample_keep_days: int = Field(default=45, ge=1)
    fleet_command_ttl_s: int = Field(default=60, ge=1)
    fleet_firmware_ttl_s: int = Field(default=900, ge=1)  # a BLE transfer takes minutes
    fleet_config_timeout_s: int = Field(default=900, ge=1)  # a rollout's wait for a report
    fleet_rollout_soak_s: int = Field(default=1800, ge=0)
    fleet_booking_guard_s: int = Field(default=900, ge=0)  # no lock update this near a booking
    # Personal data (APPI; cloud/core/personal_data.py): a clinic's check-ins, queue and
    # appointments are deleted this many days after their day (the day's figures are kept
    # as counts); a booking's name, email and free text are anonymised this many months
    # after its end (a whole local month at once, so the month's figures stay the same)
    retention_enabled: bool = True
    retention_poll_s: float = Field(default=6 * 3600.0, gt=0)
    clinic_retention_days: int = Field(default=90, ge=1)
    booking_retention_months: int = Field(default=13, ge=1)

    @field_validator("pin_length")
    @classmethod
    def _guessable_pins(cls, value: int) -> int:
        if not PIN_LENGTH_MIN <= value <= PIN_MAX_LEN:
            raise ValueError(
                f"DENEN_CLOUD_PIN_LENGTH is {value}: keypad PINs need {PIN_LENGTH_MIN} to "
                f"{PIN_MAX_LEN} digits (a shorter PIN is guessable at the door)"
            )
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> CloudSettings:
        if self.dev:
            if not self.secret_key:
                # dev only: sessions simply do not survive a restart
                self.secret_key = secrets.token_urlsafe(32)
            return self
        key = self.secret_key.strip()
        if key.lower() in _PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_LEN:
            raise ValueError(
                "DENEN_CLOUD_SECRET_KEY is empty, a placeholder or shorter than "
                f"{MIN_SECRET_LEN} characters; set it to e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
                "(or set DENEN_CLOUD_DEV=1 for local development)"
            )
        return self

    @model_validator(mode="after")
    def _metrics_need_a_token(self) -> CloudSettings:
        # Refused at start-up, like the secret key: a deploy that forgot it fails at once,
        # where an open or silently closed /metrics would be found much later.
        if self.dev and not self.metrics_token:
            return self
        token = (self.metrics_token or "").strip()
        if token.lower() in _PLACEHOLDER_SECRETS or len(token) < MIN_SECRET_LEN:
            raise ValueError(
                "DENEN_CLOUD_METRICS_TOKEN is unset, a placeholder or shorter than "
                f"{MIN_SECRET_LEN} characters, which would leave /metrics open to anyone who "
                "reaches the cloud: set DENEN_CLOUD_METRICS_TOKEN to e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and give "
                "Prometheus the same as its bearer token "
                "(or set DENEN_CLOUD_DEV=1 for local development)"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_together(self) -> CloudSettings:
        if (self.mqtt_tls_cert is None) != (self.mqtt_tls_key is None):
            raise ValueError(
                "set both DENEN_CLOUD_MQTT_TLS_CERT and DENEN_CLOUD_MQTT_TLS_KEY, or neither"
            )
        if self.mqtt_tls_cert is not None and self.mqtt_tls_ca is None:
            raise ValueError("DENEN_CLOUD_MQTT_TLS_CERT needs DENEN_CLOUD_MQTT_TLS_CA too")
        if (self.ca_cert_path is None) != (self.ca_key_path is None):
            raise ValueError(
                "set both DENEN_CLOUD_CA_CERT_PATH and DENEN_CLOUD_CA_KEY_PATH, or neither"
            )
        if self.smtp_username is not None and self.smtp_password is None:
            raise ValueError("DENEN_CLOUD_SMTP_USERNAME needs DENEN_CLOUD_SMTP_PASSWORD too")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The facilities' local time zone."""
        return ZoneInfo(self.timezone)
