"""Settings: pydantic-settings, prefix `MAMORI_`, nested with `__`; built once and passed down.

Each ingress is switched on and placed by its listen address (an empty value switches it off):
`MAMORI_SMTP__LISTEN=127.0.0.1:10025`, `MAMORI_API__LISTEN=127.0.0.1:8080`, ...
`mamori serve --help` lists every setting (see `describe_settings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.errors import ConfigError


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' -> (host, port); raises ConfigError."""
    value = value.strip()
    if value.startswith("["):
        host, _, port = value[1:].partition("]:")
    else:
        host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid listen address {value!r}: expected host:port")
    return host or default_host, int(port)


class SmtpSettings(BaseModel):
    """SMTP content filter (before-queue proxy)."""

    listen: str = Field("127.0.0.1:10025", description="address the SMTP filter listens on; empty: off")
    next_hop: str = Field("127.0.0.1:10026", description="where accepted mail is relayed")
    max_message_size: int = Field(50 * 1024 * 1024, description="bytes; larger mail gets 552")
    hostname: str = Field("mamori.localhost", description="name in the greeting and Received headers")
    relay_timeout: float = Field(60.0, description="seconds for the whole relay to the next hop")
    max_connections: int = Field(1000, description="concurrent SMTP sessions; more get 421")


class MilterSettings(BaseModel):
    """Milter ingress for Postfix/Sendmail."""

    listen: str = Field("", description="inet host:port or unix:/path; empty: off")
    default_action: Literal["tempfail", "accept"] = Field(
        "tempfail", description="what mamori answers when it fails itself"
    )
    max_body_size: int = Field(50 * 1024 * 1024, description="bytes of body kept for scanning")
    timeout: float = Field(8.0, description="seconds a scan may take, inside Postfix's milter timeouts")


class SmppSettings(BaseModel):
    """SMPP 3.4 firewall proxy."""

    listen: str = Field("", description="host:port ESMEs bind to; empty: off")
    upstream: str = Field("", description="host:port of the real SMSC")
    upstream_system_id: str = Field("", description="system_id mamori binds upstream with")
    upstream_password: str = Field("", description="password mamori binds upstream with")
    accounts: dict[str, str] = Field(default_factory=dict, description="JSON: ESME system_id -> password")
    reject_status: str = Field("ESME_RX_R_APPN", description="command_status for rejected submit_sm")
    tempfail_status: str = Field("ESME_RX_T_APPN",
                                 description="command_status for soft rejects and our own failures")
    quarantine_answer: Literal["accept", "reject"] = Field(
        "accept", description="quarantined MT: 'accept' (success, not delivered) or 'reject'")
    window: int = Field(100, description="outstanding submit_sm per bind; more get ESME_RTHROTTLED")
    throttle_rate: float = Field(0.0, description="submit_sm per second per bind; 0: unlimited")
    concat_wait: float = Field(5.0, description="seconds to wait for the parts of a long SMS")
    concat_max_groups: int = Field(10_000, description="incomplete long SMS held at once")
    concat_max_bytes: int = Field(16 * 1024 * 1024, description="bytes of parts held at once")
    upstream_timeout: float = Field(10.0, description="seconds to connect and bind upstream")
    response_timeout: float = Field(30.0, description="seconds to wait for the SMSC's response")
    enquire_link_interval: float = Field(30.0, description="seconds between upstream enquire_links")
    idle_timeout: float = Field(300.0, description="seconds without a PDU before an ESME is unbound")


class SmsSettings(BaseModel):
    """SMS checks: home network, flood detection."""

    home_country_code: str = Field("81", description="E.164 country code of the home network")
    flood_window: float = Field(300.0, description="seconds over which identical texts are counted")
    flood_recipients: int = Field(50, description="distinct recipients of one text in the window: flood")
    burst_recipients: int = Field(200, description="distinct recipients of one sender in the window")
    flood_max_keys: int = Field(200_000, description="texts tracked in memory (without Redis)")


class RedisSettings(BaseModel):
    """Shared counters across replicas (SMS floods). Empty: in-memory counters per process."""

    url: str = Field("", description="redis://host:port/db; empty: in memory")


class ApiSettings(BaseModel):
    """HTTP: REST API, SMS hook, metrics, health."""

    listen: str = Field("127.0.0.1:8080", description="address of the HTTP server; empty: off")
    keys: dict[str, list[str]] = Field(
        default_factory=dict, description="JSON: API key -> scopes, e.g. {\"k\": [\"sms:check\"]}"
    )
    jwt_secret: str = Field("", description="HS256 secret for subscriber tokens")
    jwt_public_key_file: str = Field("", description="PEM public key for RS256/ES256 tokens")
    jwt_audience: str = Field("mamori", description="required audience of subscriber tokens")


class KafkaSettings(BaseModel):
    """Event streams. No bootstrap: events go to the file sink under MAMORI_DATA_DIR/events."""

    bootstrap: str = Field("", description="Kafka bootstrap servers; empty: file sink")
    topic_verdicts: str = "mamori.verdicts"
    topic_settings: str = "mamori.settings"
    topic_feedback: str = "mamori.feedback"
    topic_dmarc: str = "mamori.dmarc"


class PipelineSettings(BaseModel):
    deadline: float = Field(5.0, description="seconds for one message, all checks together")
    check_timeout: float = Field(2.0, description="default seconds for one check")
    check_timeouts: dict[str, float] = Field(default_factory=dict, description="JSON: check -> seconds")
    disabled_checks: list[str] = Field(default_factory=list, description="JSON list of check names")
    scores_file: str = Field("", description="TOML file overriding weights and thresholds")
    weights: dict[str, float] = Field(default_factory=dict, description="JSON: symbol -> weight")
    thresholds: dict[str, float] = Field(default_factory=dict, description="JSON: action -> score")


class ModelSettings(BaseModel):
    dir: str = Field("", description="models directory (default: the repository's models/)")
    sms: str = Field("", description="SMS model directory overriding the live one")
    email: str = Field("", description="email model directory overriding the live one")


class StoreSettings(BaseModel):
    url: str = Field("", description="database URL; empty: SQLite under MAMORI_DATA_DIR")
    quarantine_days: float = Field(7.0, description="days a blocked message stays recoverable")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MAMORI_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Field(Path("var"), description="embedded database, spool, quarantine, indexes")
    shared_data: Path = Field(Path("../shared/data"), description="shared corpora (tests, training)")
    hash_key: str = Field("", description="secret for keyed hashes of numbers and addresses")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")

    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    milter: MilterSettings = Field(default_factory=MilterSettings)
    smpp: SmppSettings = Field(default_factory=SmppSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)

    @field_validator("data_dir", "shared_data", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    def models_dir(self) -> Path:
        if self.model.dir:
            return Path(self.model.dir)
        return repo_models_dir()


def repo_models_dir() -> Path:
    """models/ beside the package in a source checkout, else MAMORI_DATA_DIR/models."""
    here = Path(__file__).resolve().parent.parent / "models"
    return here


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except Exception as exc:  # pydantic.ValidationError: show it as a configuration error
        raise ConfigError(f"invalid configuration: {exc}") from exc


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, for --help."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            env = f"{prefix}{name.upper()}"
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, env + "__")
                continue
            default = f.get_default(call_default_factory=True)
            rows.append((env, "" if default is None else str(default), f.description or ""))

    walk(Settings, "MAMORI_")
    return rows


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
