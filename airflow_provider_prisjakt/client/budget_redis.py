"""
The shared request budget in Redis or Valkey, through ``limits``: one window and one count per client id.

Installed with the ``[redis]`` extra and chosen by the connection extra ``budget_backend``
(``redis://host:6379/0``, ``rediss://…``, ``valkey://…``, ``redis+sentinel://…``). Every task of
the client id claims each request in the window's shared count before sending it (the atomic,
expiring counter of ``limits``' Redis storage), and merges every response's ``X-RateLimit-*`` into
one record (:func:`~airflow_provider_prisjakt.api.budget_sharing.merge_window`). The server's
headers stay the truth: the window follows the reset the server reports, and a count below what the
server counted is raised to it. Keys hold a digest of the API origin and client id, never the id
itself, and never the secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.budget_sharing import SharedWindow, epoch_ms, is_earlier_window, merge_window
from airflow_provider_prisjakt.api.ratelimit import DEFAULT_WINDOW_SECONDS, RateLimitStatus
from airflow_provider_prisjakt.client.budget import BudgetBackendError
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError

if TYPE_CHECKING:
    from limits.storage import RedisStorage

    from airflow_provider_prisjakt.hooks.connection import ConnectionSettings

#: Every key the budget writes starts with this.
KEY_PREFIX = "prisjakt-budget"
#: A window's record outlives its last update by this long: it names the count of the window after it.
RECORD_SECONDS = 86_400
#: A window's count outlives its reset by this long, for requests claimed just before it.
COUNT_GRACE_SECONDS = 60
#: How long the store may take to answer, in seconds, before the budget paces on its own responses.
TIMEOUT_SECONDS = 5.0
#: Tries of a record update that other tasks' updates keep overtaking; the next response merges again.
MERGE_TRIES = 5
_FIELDS = ("limit", "remaining", "reset", "observed", "tag")


def budget_key(base_url: str, client_id: str) -> str:
    """Return the digest naming a client id's budget in the store: the API origin and client id, hashed."""
    return hashlib.sha256(f"{base_url}\n{client_id}".encode()).hexdigest()[:32]


def encode_window(window: SharedWindow) -> dict[str, str]:
    """Return a window as the fields of its record (unknown values left out)."""
    status = window.status
    values = {
        "limit": status.limit,
        "remaining": status.remaining,
        "reset": epoch_ms(status.reset_at) if status.reset_at else None,
        "observed": epoch_ms(status.observed_at),
        "tag": window.tag,
    }
    return {name: str(value) for name, value in values.items() if value is not None}


def decode_window(fields: Mapping[Any, Any]) -> SharedWindow | None:
    """Return the window a record holds, or ``None`` for no record (or one this version cannot read)."""
    values: dict[str, int] = {}
    for raw_name, raw_value in fields.items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        if name in _FIELDS:
            try:
                values[name] = int(raw_value)
            except (TypeError, ValueError):
                return None
    if "observed" not in values:
        return None
    reset_at = datetime.fromtimestamp(values["reset"] / 1000, tz=UTC) if "reset" in values else None
    observed_at = datetime.fromtimestamp(values["observed"] / 1000, tz=UTC)
    return SharedWindow(
        RateLimitStatus(values.get("limit"), values.get("remaining"), reset_at, observed_at), values.get("tag", 0)
    )


class RedisBudgetBackend:
    """
    A :class:`~airflow_provider_prisjakt.client.budget.CountingBackend` in Redis or Valkey.

    :param storage: a ``limits`` Redis storage (from ``limits.storage.storage_from_string``).
    :param key: the budget's digest (:func:`budget_key`).
    """

    def __init__(self, storage: RedisStorage, key: str) -> None:
        self.storage = storage
        self.key = key
        # The window as the last load() read it: the claim that follows counts in it.
        self._window: SharedWindow | None = None

    @classmethod
    def for_connection(cls, settings: ConnectionSettings) -> RedisBudgetBackend:
        """
        Open the store a connection's ``budget_backend`` names (no request is sent yet).

        :raises PrisjaktConfigError: without the ``[redis]`` extra, or for a URL the store refuses;
            the message never holds the URL, which may hold a password.
        """
        try:
            from limits.errors import ConfigurationError
            from limits.storage import storage_from_string
        except ImportError:
            raise PrisjaktConfigError(
                "The connection's budget_backend needs the redis extra: pip install 'airflow-provider-prisjakt[redis]'"
            ) from None
        try:
            storage = storage_from_string(
                settings.budget_backend or "",
                key_prefix=KEY_PREFIX,
                wrap_exceptions=True,
                socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
            )
        except (ConfigurationError, ValueError, TypeError) as err:
            raise PrisjaktConfigError(
                f"The connection's budget_backend cannot be used ({type(err).__name__}); "
                "give a redis://, rediss://, valkey:// or redis+sentinel:// URL, with the redis extra installed"
            ) from None
        return cls(storage, budget_key(settings.base_url, settings.client_id))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r})"  # never the URL: it may hold a password

    def load(self) -> RateLimitStatus | None:
        """Return the shared window's status: the fewest requests left by the server's word or by the count."""
        with self._answering():
            self._window = window = self._read()
            if window is None:
                return None
            return window.view(self.storage.get(self._count(window.tag)))

    def store(self, status: RateLimitStatus | None) -> None:
        """Merge a response's status into the shared window, and raise its count to what the server counted."""
        if status is None:
            return  # a shared window ends at its reset, for every task at once
        with self._answering():
            window = self._merge(status)
            if window is None:
                return
            count = self._count(window.tag)
            missing = window.uncounted(status, self.storage.get(count))
            if missing:
                self.storage.incr(count, self._count_seconds(window, window.tag, status.observed_at), amount=missing)

    def claim(self, at: datetime, reserve: int) -> bool:
        """Count one request sent at ``at`` in its window; refuse (and uncount) it when that window is spent."""
        with self._answering():
            window = self._window if self._window is not None else self._read()
            if window is None:
                tag, limit = 0, None
            else:
                tag, limit = window.claim_target(at)
            seconds = self._count_seconds(window, tag, at)
            count = self.storage.incr(self._count(tag), seconds)
            if limit is None or count <= limit - reserve:
                return True
            self.storage.incr(self._count(tag), seconds, amount=-1)
            return False

    def _count(self, tag: int) -> str:
        """The ``limits`` key of a window's count."""
        return f"{self.key}/claimed/{tag}"

    def _record(self) -> str:
        return self.storage.prefixed_key(f"{self.key}/window")

    @staticmethod
    def _count_seconds(window: SharedWindow | None, tag: int, now: datetime) -> int:
        """The lifetime of a new count: to its window's reset and a grace, or a whole window when unknown."""
        if window is None or tag != window.tag or window.status.reset_at is None:
            return int(DEFAULT_WINDOW_SECONDS)
        return max(1, math.ceil((window.status.reset_at - now).total_seconds())) + COUNT_GRACE_SECONDS

    def _read(self) -> SharedWindow | None:
        connection: Any = self.storage.get_connection()  # limits types only the calls it makes itself
        return decode_window(connection.hgetall(self._record()))

    def _merge(self, seen: RateLimitStatus) -> SharedWindow | None:
        """Merge ``seen`` into the record; return the window it belongs to (``None``: an earlier one, or contention)."""
        connection: Any = self.storage.get_connection()
        record = self._record()
        # The client library is redis-py or its fork valkey-py; both name the error the same.
        watch_error = importlib.import_module(f"{self.storage.target_server}.exceptions").WatchError
        for _ in range(MERGE_TRIES):
            with connection.pipeline() as pipe:
                try:
                    pipe.watch(record)
                    stored = decode_window(pipe.hgetall(record))
                    merged = merge_window(stored, seen)
                    if merged is None:
                        late = stored is not None and is_earlier_window(stored.status, seen)
                        return None if late else stored
                    pipe.multi()
                    pipe.delete(record)
                    pipe.hset(record, mapping=encode_window(merged))
                    pipe.expire(record, RECORD_SECONDS)
                    if merged.status.reset_at is not None:
                        # The count of a window claimed before its reset was known lives as long as the window.
                        expire_at = epoch_ms(merged.status.reset_at) + COUNT_GRACE_SECONDS * 1000
                        pipe.pexpireat(self.storage.prefixed_key(self._count(merged.tag)), expire_at)
                    pipe.execute()
                    return merged
                except watch_error:
                    continue
        return None

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """Turn the store's errors into :class:`BudgetBackendError`, named by type only."""
        from limits.errors import StorageError

        client_errors: Any = self.storage.base_exceptions
        try:
            yield
        except (StorageError, client_errors) as err:
            cause = err.storage_error if isinstance(err, StorageError) else err
            raise BudgetBackendError(type(cause).__name__) from None
