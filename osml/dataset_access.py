"""Which datasetRefs a training job may read, and how a datasetRef is shown: never with its password.

The admin key lets a caller name a dataset, not read the host. A local path must resolve (symlinks followed)
inside one of OSML_DATASET_ROOTS, and so must every CSV link in the dataset's folder; a `postgresql://` URL
must name only hosts in OSML_DATASET_HOSTS; an `s3://` URL only buckets in OSML_DATASET_BUCKETS (the S3
endpoint is never the caller's: it comes from the reader's own environment). The check runs where a job is
accepted and again where its data is read. docs/security.md explains the model.

This module is shared by the facade and the trainer, so it depends on neither `serving` nor `training`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from osml.settings import CommaList

MASK: Final = "***"

# userinfo of any URL (`scheme://user:secret@`), then `password=` style pairs in a query string or a libpq
# keyword string; the password may hold '@' (the last one before the host ends it)
_URL_PASSWORD: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<secret>[^/?#\s]*)@")
_PAIR_SECRET: Final = re.compile(
    r"(?P<head>(?:^|[?&;\s])(?:ssl)?(?:password|passwd|pwd|secret|token)=)(?P<secret>[^&;\s]*)", re.IGNORECASE
)
# libpq keywords a datasetRef may carry; the rest name local files (passfile, sslkey, service...) or change
# where the connection goes in ways the host list would not see
_PG_KEYWORDS: Final = frozenset(
    {"host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "connect_timeout", "application_name"}
)


class DatasetRefused(ValueError):
    """The reference names something outside the allow-lists (a 400 at submission, a failed job at read)."""


def mask_secrets(text: str) -> str:
    """`text` with every URL password and `password=` value replaced by `***` (for logs, storage, answers)."""
    if "=" not in text and "@" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _PAIR_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)


def without_masked_password(ref: str) -> str:
    """A stored (masked) URL made connectable: the `***` placeholders are dropped, so the reader authenticates
    with its own credentials (PGPASSWORD, PGPASSFILE) instead of sending the placeholder as a password."""
    parts = urlsplit(ref)
    netloc = parts.netloc.replace(f":{MASK}@", "@", 1)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if v != MASK])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class DatasetAccess(BaseSettings):
    """The allow-lists (comma-separated environment variables). Read from the environment at each check, so
    the facade and the trainer, in whichever process, apply the same lists."""

    model_config = SettingsConfigDict(env_prefix="OSML_", extra="ignore")

    # the embedded default is the working directory (where `osml up` keeps its data); a deployment sets its own
    dataset_roots: CommaList[Path] = Field(default_factory=lambda: [Path.cwd()])
    # `host` (any port) or `host:port`; none by default: postgresql:// is refused until hosts are named
    dataset_hosts: CommaList[str] = Field(default_factory=list)
    # bucket names; none by default: s3:// is refused until buckets are named
    dataset_buckets: CommaList[str] = Field(default_factory=list)

    def _resolved_roots(self) -> list[Path]:
        return [root.expanduser().resolve() for root in self.dataset_roots]

    def _inside(self, path: Path, roots: list[Path]) -> bool:
        return any(path.is_relative_to(root) for root in roots)

    def local_path(self, path: Path, *, shown: str) -> Path:
        """The real path to read (symlinks resolved) when it lies inside a root; else DatasetRefused.

        A folder's CSVs (what a folder or an orders.csv beside its history is read from) must resolve inside
        a root too, so a link planted in an allowed folder cannot reach out of it."""
        try:
            return self._inside_roots(path, shown=shown)
        except OSError as exc:  # e.g. a name longer than the filesystem allows
            raise DatasetRefused(f"datasetRef {shown}: the path cannot be resolved ({exc.strerror})") from exc

    def _inside_roots(self, path: Path, *, shown: str) -> Path:
        roots = self._resolved_roots()
        real = path.expanduser().resolve()
        if not self._inside(real, roots):
            raise DatasetRefused(f"datasetRef {shown} is outside the allowed dataset roots (OSML_DATASET_ROOTS)")
        folder = real if real.is_dir() else real.parent
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.lower().endswith(".csv") and not self._inside(entry.resolve(), roots):
                    raise DatasetRefused(
                        f"datasetRef {shown}: {entry.name} links outside the allowed dataset roots (OSML_DATASET_ROOTS)"
                    )
        return real

    def postgres(self, url: str) -> None:
        """Every host the URL could connect to (netloc, `?host=`, `?hostaddr=`, lists) is allow-listed."""
        shown = mask_secrets(url)
        try:
            # libpq spells the scheme postgresql://; SQLAlchemy's postgresql+psycopg:// names the same URL
            params = psycopg.conninfo.conninfo_to_dict(f"postgresql://{url.split('://', 1)[1]}")
        except psycopg.ProgrammingError as exc:
            raise DatasetRefused(f"datasetRef {shown} is not a valid PostgreSQL URL") from exc
        unknown = sorted(set(params) - _PG_KEYWORDS)
        if unknown:
            raise DatasetRefused(f"datasetRef {shown}: connection parameter(s) {', '.join(unknown)} are not allowed")
        hosts = [h for key in ("host", "hostaddr") for h in str(params.get(key) or "").split(",") if h]
        if not hosts:
            raise DatasetRefused(f"datasetRef {shown} must name its host")
        ports = [p for p in str(params.get("port") or "5432").split(",") if p] or ["5432"]
        allowed = {entry.lower() for entry in self.dataset_hosts}
        for index, host in enumerate(hosts):
            port = ports[index] if index < len(ports) else ports[-1]
            if host.lower() not in allowed and f"{host}:{port}".lower() not in allowed:
                raise DatasetRefused(
                    f"datasetRef {shown}: host {host}:{port} is not an allowed dataset host (OSML_DATASET_HOSTS)"
                )

    def s3(self, url: str) -> None:
        parts = urlsplit(url)
        if "@" in parts.netloc:  # credentials are the reader's own (its environment), never the caller's
            raise DatasetRefused(f"datasetRef {mask_secrets(url)}: an s3:// reference takes no credentials")
        bucket = parts.netloc
        if bucket not in self.dataset_buckets:
            raise DatasetRefused(
                f"datasetRef {url}: bucket '{bucket}' is not an allowed dataset bucket (OSML_DATASET_BUCKETS)"
            )


def check_allowed(ref: str) -> Path | None:
    """DatasetRefused unless the (syntactically valid) `ref` is inside the allow-lists; the real path of a local one.

    The facade calls this at submission and the trainer again where it reads, each with its own settings."""
    from osml.train_requests import scheme

    access = DatasetAccess()
    kind = scheme(ref)
    if kind == "s3":
        access.s3(ref)
        return None
    if kind.startswith("postgres"):
        access.postgres(ref)
        return None
    path = Path(unquote(urlsplit(ref).path)) if kind == "file" else Path(ref)
    return access.local_path(path, shown=ref)
