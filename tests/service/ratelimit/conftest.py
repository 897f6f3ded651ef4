"""Fixtures of the rate-limit tests: the Redis server they share."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """A client of ``CREDITSHARE_TEST_REDIS_URL`` (db 15 of a local server by default); the
    test is skipped at once when Redis cannot be reached."""
    url = os.environ.get("CREDITSHARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    client = redis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"Redis unreachable at {url}: {exc}")
    yield client
    client.close()
