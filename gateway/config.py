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
    if not port.isdigit() or not 0 <= int(port) < 65536:
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
    relay_pool: int = Field(16, description="kept-open sessions to the next hop; 0: one per message")
    relay_idle: float = Field(30.0, description="seconds an idle next-hop session is kept")
    max_recipients: int = Field(1000, description="recipients of one transaction; more get 452")
    rate_limit_per_minute: int = Field(
        0, description="connections per minute from one client IP; more get 421 4.7.0; 0: unlimited")
    message_rate_per_minute: int = Field(
        0, description="messages per minute from one client IP; more get 450 4.7.1; 0: unlimited")


class MilterSettings(BaseModel):
    """Milter ingress for Postfix/Sendmail."""

    listen: str = Field("", description="inet host:port or unix:/path; empty: off")
    default_action: Literal["tempfail", "accept"] = Field(
        "tempfail", description="what mamori answers when it fails itself"
    )
    max_body_size: int = Field(
        10 * 1024 * 1024, description="bytes of body kept for scanning; the rest passes unscanned"
    )
    timeout: float = Field(8.0, description="seconds a scan may take, inside Postfix's milter timeouts")
    max_connections: int = Field(2000, description="concurrent MTA connections; more get tempfail")
    max_buffered: int = Field(
        512 * 1024 * 1024, description="bytes of mail held across all connections; beyond, mail is tempfailed"
    )
    max_inflight: int = Field(64, description="scans running at once; more wait (back-pressure)")
    queue_timeout: float = Field(2.0, description="seconds a message waits for a scan slot, then tempfail")
    idle_timeout: float = Field(900.0, description="seconds without a packet before the connection closes")
    client_rate_per_minute: int = Field(
        0, description="messages per minute from one SMTP client address (connect macro); more get tempfail 4.7.1; 0: unlimited")
    socket_mode: str = Field("0660", description="octal permissions of a unix: socket")
    reject_reply: str = Field(
        "550 5.7.1 Message rejected as spam or fraud by mamori", description="SMTP reply to rejected mail"
    )
    tempfail_reply: str = Field(
        "451 4.7.1 Message deferred by mamori, try again later", description="SMTP reply to soft-rejected mail"
    )


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
    max_connections: int = Field(1000, description="concurrent ESME connections; more are closed")
    max_binds: int = Field(10, description="binds of one system_id at once; more get ESME_RBINDFAIL")
    throttle_rate: float = Field(0.0, description="submit_sm per second per bind; 0: unlimited")
    batch_wait: float = Field(
        0.0, description="seconds a batch of messages to judge waits for more after its first "
                         "(0: judged in the next event-loop turn); a larger batch costs less CPU "
                         "per message, each message waits up to this long")
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
    jwt_issuer: str = Field("", description="required issuer of subscriber tokens; empty: any")
    rate_limit: float = Field(20.0, description="requests per second per caller (token bucket)")
    rate_burst: int = Field(60, description="burst size of the per-caller rate limit")
    max_body: int = Field(64 * 1024, description="bytes; larger request bodies get 413")
    max_import_body: int = Field(
        32 * 1024 * 1024, description="bytes; larger operator imports get 413")
    cors_origins: list[str] = Field(
        default_factory=list, description="JSON list of origins allowed to call the API")


class KafkaSettings(BaseModel):
    """Event streams. No bootstrap: events go to the file sink under MAMORI_DATA_DIR/events."""

    bootstrap: str = Field("", description="Kafka bootstrap servers; empty: file sink")
    topic_verdicts: str = "mamori.verdicts"
    topic_settings: str = "mamori.settings"
    topic_feedback: str = "mamori.feedback"
    topic_dmarc: str = "mamori.dmarc"
    client_id: str = Field("mamori", description="Kafka client id")
    acks: Literal["all", "1", "0"] = Field("all", description="producer acks: all (safe), 1, 0")
    enable_idempotence: bool = Field(
        True, description="idempotent producer (false for brokers without it, e.g. Tansu)"
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "gzip", description="producer compression (snappy/lz4/zstd need extra Python packages)"
    )
    linger_ms: int = Field(5, description="ms a producer batch waits to fill")
    max_batch_size: int = Field(65536, description="bytes per producer batch and partition")
    request_timeout_ms: int = Field(10000, description="ms before a produce request fails over to the spool")
    retry_backoff_ms: int = Field(200, description="ms between producer retries")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str = Field("", description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; empty: none")
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = Field("", description="CA bundle for SSL/SASL_SSL")
    queue_size: int = Field(10000, description="events held in memory before spilling to the spool")
    spool_dir: str = Field("", description="durable spool (default MAMORI_DATA_DIR/spool/events)")
    replay_batch: int = Field(1000, description="events per send round (queue and spool replay)")
    max_backoff: float = Field(5.0, description="seconds between reconnect attempts, at most")
    close_timeout: float = Field(10.0, description="seconds to flush at shutdown; the rest is spooled")


class RetentionSettings(BaseModel):
    """How long each record type is kept (days); `mamori retention purge` and the schedule in
    `mamori serve` delete what expired, except records under a legal hold."""

    verdicts_days: float = Field(180.0, description="verdict records (event files)")
    quarantine_days: float = Field(7.0, description="quarantined message content")
    feedback_days: float = Field(365.0, description="subscriber feedback")
    audit_days: float = Field(730.0, description="audit trail of settings changes")
    settings_days: float = Field(730.0, description="settings-change events")
    dmarc_days: float = Field(90.0, description="DMARC report data and report files")
    spool_days: float = Field(7.0, description="undelivered events in the Kafka spool")
    other_days: float = Field(180.0, description="any other record type")
    interval_hours: float = Field(24.0, description="hours between scheduled purges in serve; 0: off")

    def days_for(self, kind: str) -> float:
        value = getattr(self, f"{kind}_days", None)
        return float(value) if isinstance(value, int | float) else self.other_days


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
    shadow_sms: str = Field("", description="candidate SMS model scored in shadow mode (events only)")
    shadow_email: str = Field("", description="candidate email model scored in shadow mode (events only)")


class StoreSettings(BaseModel):
    url: str = Field("", description="database URL; empty: SQLite under MAMORI_DATA_DIR")
    policy_cache_size: int = Field(
        1_000_000, description="subscriber policies kept in memory (LRU; about 500 bytes each)")
    policy_cache_ttl: float = Field(
        30.0, description="seconds before a cached policy is refreshed (in the background)")
    release_smtp: str = Field(
        "", description="host:port where released email is re-injected by SMTP; empty: "
                        "released mail is only marked released")
    policy_poll_interval: float = Field(
        1.0, description="seconds between polls of the policy change feed (other replicas)")
    policy_timeout: float = Field(
        2.0, description="seconds a scan waits for an uncached policy (then: policy_fallback)")
    policy_fallback: Literal["default", "tempfail"] = Field(
        "default", description="store down or slow for an uncached subscriber: scan with the "
                               "default policy, or answer a temporary failure")


class AuthSettings(BaseModel):
    """Email authentication: SPF, DKIM, DMARC, ARC, and DMARC aggregate reports."""

    trusted_arc_sealers: list[str] = Field(
        default_factory=list,
        description="JSON list of ARC sealer domains (forwarders, lists) whose valid chain overrides a DMARC failure",
    )
    authserv_id: str = Field("", description="authserv-id of the Authentication-Results header (default: MAMORI_SMTP__HOSTNAME)")
    zone_file: str = Field("", description="answer DNS from this zonedata file (YAML/JSON) instead of live DNS")
    nameservers: list[str] = Field(default_factory=list, description="JSON list of DNS servers (default: resolv.conf)")
    dns_timeout: float = Field(2.0, description="seconds for one DNS query")
    dns_budget: int = Field(30, description="network DNS queries one message may cause; more are temperror")
    dns_cache_size: int = Field(100_000, description="DNS answers kept in the cache")
    reports: bool = Field(True, description="collect DMARC aggregate report data")
    report_dir: str = Field("", description="DMARC report directory (default: MAMORI_DATA_DIR/dmarc-reports)")
    report_org_name: str = Field("mamori", description="org_name in DMARC aggregate reports")
    report_email: str = Field("postmaster@localhost", description="email in DMARC aggregate reports")
    report_smtp: str = Field("", description="host:port of the relay `mamori auth report --send` mails reports through; empty: write files only")


class UrlsSettings(BaseModel):
    """URL intelligence: lists (index under MAMORI_DATA_DIR/urls), lookalikes, shorteners."""

    index_file: str = Field("", description="URL index file (default MAMORI_DATA_DIR/urls/index.bin)")
    reload_interval: float = Field(1.0, description="seconds between checks for a new index file")
    lookalike: bool = Field(True, description="detect brand lookalike domains")
    brands_file: str = Field("", description="TOML file of extra brands (shape of gateway/data/brands.toml)")
    extra_shorteners: list[str] = Field(default_factory=list, description="JSON list of more shortener hosts")
    expand_shorteners: bool = Field(False, description="follow shortener redirects (network; off)")
    expand_timeout: float = Field(1.5, description="seconds for one shortener expansion")


class LimitsSettings(BaseModel):
    """Input limits of the parsers every ingress shares, and the bound of the memo caches
    (docs/reliability.md lists each with its answer)."""

    mime_max_parts: int = Field(200, description="MIME parts of one message scanned; the rest pass unscanned")
    mime_max_depth: int = Field(20, description="MIME nesting levels scanned; deeper parts pass unscanned")
    mime_parse_bytes: int = Field(8 * 1024 * 1024, description="bytes of one message parsed for content checks")
    urls_per_message: int = Field(500, description="URLs of one message looked up; the rest are not")
    header_max_count: int = Field(1000, description="header fields of one mail; more get 552 5.3.4 (SMTP) or the milter's reject")
    header_max_bytes: int = Field(1024 * 1024, description="bytes of one mail's header block; more get 552 5.3.4 (SMTP) or the milter's reject")
    sms_body_max: int = Field(2 * 1024 * 1024, description="bytes of one SMS hook request body; larger get 413")
    sms_batch_max: int = Field(1000, description="messages in one POST /v1/sms/check-batch; more get 422")
    sms_text_max: int = Field(64 * 1024, description="characters of one SMS text on the HTTP hook; more get 422")
    header_cache_size: int = Field(2048, description="parsed mail header fields kept for reuse (about 5 KB each)")
    token_cache_size: int = Field(200_000, description="classifier word-token hashes kept (about 130 bytes each; filled once, not evicted)")
    memo_cache_size: int = Field(8192, description="entries of each memo cache (hosts, domains, sender ids)")
    client_state_max: int = Field(100_000, description="clients whose request rates are tracked at once (LRU)")


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
    workers: int = Field(1, ge=0, description="serving processes sharing the listening sockets "
                         "(pre-fork, supervised); 0: one per CPU")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="event loop of `mamori serve`: auto (uvloop when installed), "
                            "asyncio, uvloop")

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
    auth: AuthSettings = Field(default_factory=AuthSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    urls: UrlsSettings = Field(default_factory=UrlsSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)

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
