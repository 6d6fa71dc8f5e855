"""The private PostgreSQL of tests/postgres.py: what the storage tests rely on about it."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from postgres import PostgresCluster

pytest_plugins = ["peers", "postgres"]


def test_the_cluster_is_private_durable_and_not_root(
    postgres: PostgresCluster, pg_url: str
) -> None:
    with psycopg.connect(pg_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["fsync", "listen_addresses", "max_connections", "synchronous_commit"],),
            ).fetchall()
        )
        data_directory = conn.execute("SHOW data_directory").fetchone()
    assert settings == {
        "fsync": "on",
        "listen_addresses": "127.0.0.1",
        "max_connections": "100",
        "synchronous_commit": "on",
    }
    assert data_directory == (str(postgres.data),)
    assert postgres.data.stat().st_uid != 0  # postgres refuses root; the tests run as anyone
    assert pg_url.endswith("/test_postgres_cluster")


def test_a_cluster_of_its_own_stops_and_starts_again(
    pg_cluster: Callable[..., PostgresCluster],
) -> None:
    cluster = pg_cluster(max_connections=20)
    with psycopg.connect(cluster.url) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == ("20",)
    cluster.stop()
    assert not cluster.running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(cluster.url, connect_timeout=2)
    cluster.start()
    with psycopg.connect(cluster.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
