"""Every setting relevo reads, in one place: flags override environment (prefix RELEVO_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """relevo's settings; each field is read from `RELEVO_<FIELD>` in the environment."""

    # settings hold secrets (tokens, webhook addresses): an error names the setting, not its value
    model_config = SettingsConfigDict(
        env_prefix="RELEVO_", extra="ignore", hide_input_in_errors=True
    )

    home: Path = Field(
        default_factory=lambda: Path.home() / ".relevo",
        description="Folder for artifacts and the default SQLite database.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; default: SQLite file relevo.db under home.",
    )
    artifacts_url: str | None = Field(
        default=None,
        description="Where artifacts live: s3://bucket/prefix (an S3-compatible bucket every "
        "replica reaches; the s3 extra) or a folder; default: the folder artifacts under home.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server (MinIO, Ceph, moto); default: AWS. "
        "Credentials come the standard AWS way (environment, ~/.aws, an instance role).",
    )
    api_token: str | None = Field(default=None, description="Bearer token for predict/feedback.")
    admin_token: str | None = Field(default=None, description="Bearer token for state changes.")

    @field_validator("api_token", "admin_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        """A token as a client sends it: a file or a secret adds a trailing newline, which no
        client's header carries (every correct client got 401); a blank one is no token; one
        that a header cannot carry (non-ASCII, control characters) is refused, not served with
        every request answered 401."""
        value = value.strip() if isinstance(value, str) else value
        if value:
            for position, char in enumerate(value, 1):
                if char != "\t" and not " " <= char <= "~":
                    kind = "a non-ASCII" if char > "\x7f" else "a control"
                    raise ValueError(
                        f"it has {kind} character (at position {position}), which an HTTP "
                        "header cannot carry, so no request could match it; use printable "
                        'ASCII (`python -c "import secrets; print(secrets.token_urlsafe(32))"`)'
                    )
        return value or None

    max_batch_size: int = Field(default=64, ge=1, description="Rows per coalesced model call.")
    max_batch_wait_ms: float = Field(
        default=0.0, ge=0, description="Extra wait for a batch to fill; 0 = only what is queued."
    )
    log_predictions: bool = Field(default=True, description="Store every answered prediction.")
    log_queue_rows: int = Field(
        default=100_000, ge=1, description="Rows the prediction log may hold in memory."
    )
    log_flush_rows: int = Field(default=5_000, ge=1, description="Rows per store write.")
    log_flush_interval_s: float = Field(default=0.2, gt=0, description="Max wait to flush.")
    log_writer: Literal["process", "thread"] = Field(
        default="process",
        description="Where logged rows are stored and profiled: a writer process beside the "
        "server (off the server's GIL), or a thread inside it.",
    )
    log_fsync: bool = Field(
        default=False,
        description="fsync the prediction log's spool after every entry: survives a machine "
        "crash, not only a process crash, at the cost of one disk flush per request.",
    )
    profiles: bool = Field(
        default=True,
        description="Profile logged predictions per time bucket (monitoring: drift, quality).",
    )
    profile_bucket_s: int = Field(
        default=60, ge=1, description="Seconds per production profile bucket."
    )
    profile_flush_s: float = Field(
        default=10.0, gt=0, description="How often a server stores its production profiles."
    )
    reject_unseen_categories: bool = Field(
        default=False, description="Reject (422) categories absent from the reference."
    )
    reject_out_of_range: bool = Field(
        default=False, description="Reject (422) numbers outside the reference's range."
    )
    max_body_mb: float = Field(
        default=16.0, gt=0, description="Largest request body accepted (after decompression)."
    )
    limit_concurrency: int = Field(
        default=256,
        ge=1,
        description="Connections and requests in flight per server process; more answer 503.",
    )
    max_header_kb: float = Field(
        default=64.0, gt=0, description="Largest request line and headers accepted (431 above)."
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="How long an idle keep-alive connection stays open."
    )
    max_rows: int = Field(
        default=10_000,
        ge=1,
        description="Most rows one prediction request may carry (413 above; V2 checks the "
        "declared shapes before decoding any data).",
    )
    batch_chunk_rows: int = Field(
        default=50_000,
        ge=1,
        description="Rows batch scoring reads, validates, scores and writes at a time "
        "(memory grows with it, not with the file).",
    )
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often a server checks for deployment changes."
    )
    rollout_min_step_rows: int = Field(
        default=500, ge=0, description="Challenger rows a rollout step needs before advancing."
    )
    rollout_min_step_seconds: float = Field(
        default=300.0, ge=0, description="Seconds a rollout step lasts at least."
    )
    rollout_bake_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="After a promotion, how long a firing alert still rolls back on its own.",
    )
    rollout_eval_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="How often a server checks the gates of deployments with a challenger "
        "(0: this server never evaluates; another one, or `evaluate` on demand, must).",
    )
    monitor_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="How often a server evaluates the alert rules of every deployment, one "
        "replica at a time (0: never on a schedule; `relevo alerts evaluate` on demand).",
    )
    alert_webhook_url: str | None = Field(
        default=None, description="A generic JSON webhook that receives every notification."
    )
    alert_slack_url: str | None = Field(
        default=None,
        description='A Slack-compatible incoming webhook ({"text": ...}) for notifications.',
    )
    alert_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds a webhook delivery may take before it is retried."
    )
    alert_retries: int = Field(
        default=5, ge=0, description="Retries of a failed webhook delivery (exponential backoff)."
    )
    shadow_queue_rows: int = Field(
        default=10_000,
        ge=1,
        description="Rows waiting for a deployment's shadow challenger at most; more are "
        "dropped and counted.",
    )
    feedback_label_delay_days: float = Field(
        default=7.0,
        ge=0,
        description="Days a window's labels take to arrive: after them the window is mature "
        "(per deployment: the 'feedback' section of its monitoring settings, label_delay_days).",
    )
    feedback_min_coverage: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Share of a window's predictions labelled that makes it mature before the "
        "delay has passed (per deployment: min_coverage).",
    )
    feedback_min_labels: int = Field(
        default=30, ge=1, description="Labelled rows a window needs before it is judged."
    )
    feedback_match_window_days: float = Field(
        default=30.0,
        gt=0,
        description="Labels joined by routing key and time belong to the latest prediction for "
        "the key at most this many days before the label's time.",
    )

    shutdown_drain_s: float = Field(
        default=0.0,
        ge=0,
        description="After SIGTERM, how long a server keeps answering with /readyz failing "
        "before it stops (load balancers take it out meanwhile); then in-flight requests "
        "finish and the prediction log is flushed.",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="Folder for the Prometheus multiprocess metrics of `relevo serve` (emptied "
        "at start); default: a new temporary folder when --workers > 1.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'relevo.db').as_posix()}"

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)

    @property
    def dead_letter_path(self) -> Path:
        """Where prediction rows the store refuses are kept (JSON lines)."""
        return self.home / "dead-letter" / "predictions.jsonl"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment (cached; `reset_settings` to reread)."""
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()
