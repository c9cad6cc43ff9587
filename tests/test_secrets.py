"""Secrets: references, the env / db / custom backends, SecretScope, and the settings-driven redact()."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from automate.core.errors import AutomateError, SecretNotFound
from automate.models import Secret
from automate.secret_backends import (
    KEY_ENV_VAR,
    DatabaseSecretBackend,
    EnvSecretBackend,
    SecretBackend,
    SecretDecryptionError,
    get_backend,
)
from automate.secrets import (
    REDACTED,
    SecretScope,
    aresolve,
    delete_secret,
    get_redactor,
    is_secret_ref,
    parse_ref,
    redact,
    resolve,
    set_secret,
)

STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
PG_PASSWORD = "pg-pass-7f3a9c2e11"
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@contextmanager
def secrets_settings(**secrets: Any) -> Iterator[None]:
    """Override DJANGO_AUTOMATE.SECRETS, keeping the rest of the test settings."""
    with override_settings(DJANGO_AUTOMATE={**settings.DJANGO_AUTOMATE, "SECRETS": secrets}):
        yield


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    monkeypatch.setenv("AUTOMATE_STRIPE_KEY", STRIPE)
    monkeypatch.setenv("AUTOMATE_PG_PASSWORD", PG_PASSWORD)
    return monkeypatch


# -- references ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["$secret:STRIPE_KEY", "STRIPE_KEY", "$secret:_x", "$secret:a1", "A" * 200])
def test_parse_ref_accepts_prefixed_and_bare_names(ref: str) -> None:
    assert parse_ref(ref) == ref.removeprefix("$secret:")


@pytest.mark.parametrize(
    "ref",
    ["", "$secret:", "$secret:1ABC", "$secret:a-b", "$secret:has space", "$secret:x.y", "A" * 201, "$SECRET:X",
     "$secret:X\n", " X", "$secret:ü"],
)  # fmt: skip
def test_parse_ref_rejects_malformed_references(ref: str) -> None:
    with pytest.raises(ValueError, match="malformed secret reference"):
        parse_ref(ref)
    with pytest.raises(ValueError, match="malformed secret reference"):
        resolve(ref)


def test_a_malformed_bare_string_is_never_echoed() -> None:
    with pytest.raises(ValueError) as excinfo:
        resolve("hunter2-my-real-password!")
    assert "hunter2" not in str(excinfo.value)
    with pytest.raises(ValueError, match=r"'\$secret:bad-name'"):  # meant as a reference: quoted
        resolve("$secret:bad-name")
    with pytest.raises(TypeError):
        resolve(123)  # type: ignore[arg-type]


def test_is_secret_ref() -> None:
    assert is_secret_ref("$secret:TOKEN")
    assert not is_secret_ref("TOKEN")
    assert not is_secret_ref("$secret:bad-name")
    assert not is_secret_ref(None)


# -- env backend ----------------------------------------------------------------------------------------------


def test_env_backend_resolves_prefixed_variables(env: pytest.MonkeyPatch) -> None:
    assert isinstance(get_backend(), EnvSecretBackend)
    assert resolve("$secret:STRIPE_KEY") == STRIPE
    assert resolve("PG_PASSWORD") == PG_PASSWORD
    env.setenv("AUTOMATE_STRIPE_KEY", "rotated-value-1")
    assert resolve("$secret:STRIPE_KEY") == "rotated-value-1"  # read at each lookup


def test_env_backend_prefix_setting(env: pytest.MonkeyPatch) -> None:
    env.setenv("MYAPP_TOKEN", "myapp-token-1")
    with secrets_settings(backend="env", prefix="MYAPP_"):
        assert resolve("$secret:TOKEN") == "myapp-token-1"
        with pytest.raises(SecretNotFound):
            resolve("$secret:STRIPE_KEY")  # AUTOMATE_STRIPE_KEY is not MYAPP_STRIPE_KEY


def test_missing_secret_names_the_reference_and_no_value(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SecretNotFound) as excinfo:
        resolve("$secret:MISSING_ONE")
    exc = excinfo.value
    assert exc.ref == "$secret:MISSING_ONE"
    assert isinstance(exc, AutomateError) and isinstance(exc, LookupError)
    text = str(exc) + " ".join(getattr(exc, "__notes__", []))
    assert "$secret:MISSING_ONE" in str(exc)
    assert "AUTOMATE_MISSING_ONE" in text  # where it looked
    for value in (STRIPE, PG_PASSWORD):
        assert value not in text and value not in repr(exc)


async def test_aresolve_env(env: pytest.MonkeyPatch) -> None:
    assert await aresolve("$secret:STRIPE_KEY") == STRIPE
    with pytest.raises(SecretNotFound):
        await aresolve("$secret:NOPE")


def test_env_backend_with_its_own_mapping() -> None:
    backend = EnvSecretBackend("P_", environ={"P_X": "value-x"})
    assert backend.get("X") == "value-x" and backend.get("Y") is None
    assert isinstance(backend, SecretBackend)
    assert "value-x" not in repr(backend)


# -- db backend -----------------------------------------------------------------------------------------------


@pytest.fixture
def db_secrets(db: None, env: pytest.MonkeyPatch) -> Iterator[None]:
    with secrets_settings(backend="db", encryption_key=KEY_A):
        yield


def test_db_backend_round_trip_encrypted_at_rest(db_secrets: None) -> None:
    assert isinstance(get_backend(), DatabaseSecretBackend)
    set_secret("STRIPE_KEY", STRIPE)
    assert resolve("$secret:STRIPE_KEY") == STRIPE

    row = Secret.objects.get(name="STRIPE_KEY")
    assert STRIPE not in row.ciphertext
    assert base64.b64encode(STRIPE.encode()).decode().rstrip("=") not in row.ciphertext
    assert Fernet(KEY_A).decrypt(row.ciphertext.encode()).decode() == STRIPE  # really Fernet with that key
    assert STRIPE not in repr(row) and STRIPE not in str(row) and row.ciphertext not in repr(row)

    set_secret("$secret:STRIPE_KEY", "sk_live_rotatedValue00000001")  # an upsert, the prefix is accepted
    assert resolve("STRIPE_KEY") == "sk_live_rotatedValue00000001"
    assert Secret.objects.filter(name="STRIPE_KEY").count() == 1

    assert delete_secret("STRIPE_KEY") is True
    assert delete_secret("STRIPE_KEY") is False
    with pytest.raises(SecretNotFound) as excinfo:
        resolve("$secret:STRIPE_KEY")
    assert STRIPE not in str(excinfo.value)


def test_db_backend_does_not_read_the_environment(db_secrets: None) -> None:
    with pytest.raises(SecretNotFound):
        resolve("$secret:STRIPE_KEY")  # AUTOMATE_STRIPE_KEY is set, but the backend is "db"


def test_set_secret_validates_name_and_value(db_secrets: None) -> None:
    with pytest.raises(ValueError):
        set_secret("bad-name", "v")
    with pytest.raises(TypeError):
        set_secret("GOOD", b"bytes")  # type: ignore[arg-type]
    assert not Secret.objects.exists()


def test_wrong_key_is_a_clear_error_naming_the_secret_not_the_data(db: None, env: pytest.MonkeyPatch) -> None:
    with secrets_settings(backend="db", encryption_key=KEY_A):
        set_secret("PG_PASSWORD", PG_PASSWORD)
    ciphertext = Secret.objects.get(name="PG_PASSWORD").ciphertext
    with secrets_settings(backend="db", encryption_key=KEY_B):
        with pytest.raises(SecretDecryptionError) as excinfo:
            resolve("$secret:PG_PASSWORD")
    exc = excinfo.value
    assert isinstance(exc, AutomateError)
    assert "PG_PASSWORD" in str(exc) and "DJANGO_AUTOMATE.SECRETS.encryption_key" in str(exc)
    for leak in (PG_PASSWORD, ciphertext, KEY_A, KEY_B):
        assert leak not in str(exc)
    assert exc.__cause__ is None and exc.__suppress_context__


def test_corrupt_row_is_a_decryption_error(db_secrets: None) -> None:
    Secret.objects.create(name="BROKEN", ciphertext="not-a-fernet-token")
    with pytest.raises(SecretDecryptionError, match="'BROKEN'"):
        resolve("$secret:BROKEN")


def test_key_rotation_with_a_comma_separated_list(db: None, env: pytest.MonkeyPatch) -> None:
    with secrets_settings(backend="db", encryption_key=KEY_A):
        set_secret("PG_PASSWORD", PG_PASSWORD)
    old = Secret.objects.get(name="PG_PASSWORD").ciphertext
    with secrets_settings(backend="db", encryption_key=f"{KEY_B}, {KEY_A}"):
        assert resolve("$secret:PG_PASSWORD") == PG_PASSWORD  # the old key still decrypts
        backend = get_backend()
        assert isinstance(backend, DatabaseSecretBackend)
        assert backend.rotate() == 1
    new = Secret.objects.get(name="PG_PASSWORD").ciphertext
    assert new != old
    with secrets_settings(backend="db", encryption_key=KEY_B):
        assert resolve("$secret:PG_PASSWORD") == PG_PASSWORD  # now under the new key alone


def test_missing_encryption_key_names_the_setting(db: None, env: pytest.MonkeyPatch) -> None:
    with secrets_settings(backend="db"):
        with pytest.raises(ImproperlyConfigured, match=r"DJANGO_AUTOMATE\.SECRETS\.encryption_key") as excinfo:
            resolve("$secret:X")
        assert KEY_ENV_VAR in str(excinfo.value)
        env.setenv(KEY_ENV_VAR, KEY_A)  # the environment variable is the fallback
        set_secret("X", "value-from-env-key")
        assert resolve("$secret:X") == "value-from-env-key"


def test_invalid_encryption_key_is_not_echoed(db: None, env: pytest.MonkeyPatch) -> None:
    bad = "this-is-not-a-fernet-key-but-a-secret"
    with secrets_settings(backend="db", encryption_key=bad):
        with pytest.raises(ImproperlyConfigured, match="not a valid Fernet key") as excinfo:
            resolve("$secret:X")
    assert bad not in str(excinfo.value)


@pytest.mark.django_db(transaction=True)
async def test_aresolve_db_runs_off_the_event_loop(env: pytest.MonkeyPatch, async_db_cleanup: None) -> None:
    from asgiref.sync import sync_to_async

    with secrets_settings(backend="db", encryption_key=KEY_A):
        await sync_to_async(set_secret)("STRIPE_KEY", STRIPE)
        loop_thread = threading.get_ident()
        seen: list[int] = []
        backend = get_backend()
        assert isinstance(backend, DatabaseSecretBackend)
        original = DatabaseSecretBackend.get

        def spy(self: DatabaseSecretBackend, name: str) -> str | None:
            seen.append(threading.get_ident())
            return original(self, name)

        env.setattr(DatabaseSecretBackend, "get", spy)
        assert await aresolve("$secret:STRIPE_KEY") == STRIPE
        with pytest.raises(SecretNotFound):
            await aresolve("$secret:MISSING")
        assert len(seen) == 2 and loop_thread not in seen  # the ORM ran in a worker thread


# -- custom backends ------------------------------------------------------------------------------------------


class DictBackend:
    """A custom backend: a class instantiated with no arguments."""

    values = {"VAULT_TOKEN": "hvs.CAESIJ1x2y3z4w5v6u7t8s9r0q"}
    calls: list[str] = []

    def get(self, name: str) -> str | None:
        DictBackend.calls.append(name)
        return self.values.get(name)


class AsyncDictBackend(DictBackend):
    awaited: list[str] = []

    async def aget(self, name: str) -> str | None:
        AsyncDictBackend.awaited.append(name)
        return self.values.get(name)


class NotABackend:
    pass


class BytesBackend:
    def get(self, name: str) -> Any:
        return b"bytes-value"


INSTANCE_BACKEND = EnvSecretBackend("CUSTOM_", environ={"CUSTOM_K": "custom-instance-value"})


def test_custom_backend_class_by_dotted_path(env: pytest.MonkeyPatch) -> None:
    with secrets_settings(backend="tests.test_secrets.DictBackend"):
        backend = get_backend()
        assert isinstance(backend, DictBackend)
        assert get_backend() is backend  # cached per settings value
        assert resolve("$secret:VAULT_TOKEN") == DictBackend.values["VAULT_TOKEN"]
        with pytest.raises(SecretNotFound) as excinfo:
            resolve("$secret:NOPE")
        assert "DictBackend" in " ".join(excinfo.value.__notes__)
    assert get_backend() is not backend  # the cache follows the setting


def test_custom_backend_object_by_dotted_path() -> None:
    with secrets_settings(backend="tests.test_secrets.INSTANCE_BACKEND"):
        assert get_backend() is INSTANCE_BACKEND
        assert resolve("K") == "custom-instance-value"


async def test_aresolve_prefers_aget_and_falls_back_to_a_thread() -> None:
    AsyncDictBackend.awaited.clear()
    with secrets_settings(backend="tests.test_secrets.AsyncDictBackend"):
        assert await aresolve("$secret:VAULT_TOKEN") == DictBackend.values["VAULT_TOKEN"]
    assert AsyncDictBackend.awaited == ["VAULT_TOKEN"]
    DictBackend.calls.clear()
    with secrets_settings(backend="tests.test_secrets.DictBackend"):
        assert await aresolve("$secret:VAULT_TOKEN") == DictBackend.values["VAULT_TOKEN"]
    assert DictBackend.calls == ["VAULT_TOKEN"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.test_secrets.Nope", "cannot import"),
        ("no_such_module.Backend", "cannot import"),
        ("nodots", "cannot import"),
        ("tests.test_secrets.NotABackend", "no get"),
    ],
)
def test_bad_dotted_path_names_the_setting_and_the_path(path: str, message: str) -> None:
    with secrets_settings(backend=path):
        with pytest.raises(ImproperlyConfigured) as excinfo:
            resolve("$secret:X")
    text = str(excinfo.value)
    assert "DJANGO_AUTOMATE.SECRETS.backend" in text and repr(path) in text and message in text


def test_a_backend_returning_a_non_string_is_refused() -> None:
    with secrets_settings(backend="tests.test_secrets.BytesBackend"):
        with pytest.raises(TypeError, match="returned a bytes") as excinfo:
            resolve("$secret:X")
    assert "bytes-value" not in str(excinfo.value)


def test_set_secret_needs_a_storing_backend(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured, match="cannot store secrets"):
        set_secret("X", "v")
    with pytest.raises(ImproperlyConfigured, match="cannot store secrets"):
        delete_secret("X")


# -- run scope ------------------------------------------------------------------------------------------------


def test_secret_scope_scrubs_what_it_resolved(env: pytest.MonkeyPatch) -> None:
    scope = SecretScope()
    assert scope.redactor.secret_count == 0
    assert scope.resolve("$secret:STRIPE_KEY") == STRIPE
    assert scope.resolve("PG_PASSWORD") == PG_PASSWORD
    assert scope.names == ("PG_PASSWORD", "STRIPE_KEY")

    output = {
        "status": 200,
        "echo": f"charged with {STRIPE}",
        "nested": [{"innocent": PG_PASSWORD}],
        PG_PASSWORD: "as a key",
        "authorization": "whatever",
    }
    out = scope.redact(output)
    assert STRIPE not in repr(out) and PG_PASSWORD not in repr(out)
    assert out["echo"] == f"charged with {REDACTED}"
    assert out["authorization"] == REDACTED
    assert scope.redactor.redact(output) == out
    for leak in (STRIPE, PG_PASSWORD):
        assert leak not in repr(scope)


def test_secret_scope_fetches_each_name_once() -> None:
    DictBackend.calls.clear()
    scope = SecretScope(backend=DictBackend())
    first = scope.redactor
    assert scope.resolve("VAULT_TOKEN") == scope.resolve("$secret:VAULT_TOKEN")
    assert DictBackend.calls == ["VAULT_TOKEN"]
    assert scope.redactor is not first
    assert scope.redactor is scope.redactor  # rebuilt only when a value is added
    with pytest.raises(SecretNotFound):
        scope.resolve("NOPE")


def test_secret_scope_remember(env: pytest.MonkeyPatch) -> None:
    scope = SecretScope()
    scope.remember("oauth-access-token-abc123")
    scope.remember("oauth-access-token-abc123")
    assert scope.redactor.secret_count == 1
    assert scope.names == ()
    assert scope.redact({"x": "got oauth-access-token-abc123"}) == {"x": f"got {REDACTED}"}
    with pytest.raises(TypeError):
        scope.remember(123)  # type: ignore[arg-type]


async def test_secret_scope_aresolve(env: pytest.MonkeyPatch) -> None:
    scope = SecretScope()
    assert await scope.aresolve("$secret:STRIPE_KEY") == STRIPE
    assert scope.redact(f"key {STRIPE}") == f"key {REDACTED}"
    with pytest.raises(SecretNotFound):
        await scope.aresolve("$secret:NOPE")


def test_secret_scope_with_the_db_backend(db_secrets: None) -> None:
    set_secret("PG_PASSWORD", PG_PASSWORD)
    scope = SecretScope()
    assert scope.resolve("$secret:PG_PASSWORD") == PG_PASSWORD
    assert scope.redact(f"dsn=postgres://app@db/app?x={PG_PASSWORD}") == f"dsn=postgres://app@db/app?x={REDACTED}"


# -- settings-driven redaction --------------------------------------------------------------------------------


def test_redact_uses_the_redact_keys_and_patterns_settings() -> None:
    data = {"customer_ssn": "123-45-6789", "note": "order ACME-123456", "password": "p"}
    assert redact(data) == {"customer_ssn": "123-45-6789", "note": "order ACME-123456", "password": REDACTED}
    with secrets_settings(redact_keys=["ssn"], redact_patterns=[r"ACME-\d{6}"]):
        assert redact(data) == {"customer_ssn": REDACTED, "note": f"order {REDACTED}", "password": REDACTED}
        assert get_redactor() is get_redactor()
        scope = SecretScope()
        assert scope.redact(data)["customer_ssn"] == REDACTED
    assert redact(data)["customer_ssn"] == "123-45-6789"


def test_invalid_redact_pattern_names_the_setting() -> None:
    with secrets_settings(redact_patterns=["ok", "(unclosed"]):
        with pytest.raises(ImproperlyConfigured, match=r"DJANGO_AUTOMATE\.SECRETS\.redact_patterns\[1\]"):
            redact({"x": 1})


# -- the db backend and lost connections ----------------------------------------------------------------------


def _terminate_and_wait(pids: set[int]) -> None:
    """pg_terminate_backend from another connection, then wait until the backends are really gone."""
    import psycopg

    from tests.aio.procs import wait_until
    from tests.conftest import conninfo

    with psycopg.connect(conninfo(), autocommit=True) as killer:
        for pid in pids:
            killer.execute("SELECT pg_terminate_backend(%s)", [pid])

        def gone() -> bool:
            rows = killer.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)]).fetchall()
            return not rows

        wait_until(gone, 30, f"backends {pids} survived pg_terminate_backend")


@pytest.fixture
def spied_db_backend(env: pytest.MonkeyPatch) -> Iterator[tuple[set[int], list[int]]]:
    """The db backend, with the thread of every lookup and the server pid of every lookup off the main
    thread recorded; those connections are terminated at the end (a persistent one left in a pool thread
    must not keep the test database open)."""
    from django.db import connections, router

    pids: set[int] = set()
    threads: list[int] = []
    original = DatabaseSecretBackend.get

    def spy(self: DatabaseSecretBackend, name: str) -> str | None:
        value = original(self, name)
        threads.append(threading.get_ident())
        conn = connections[router.db_for_read(Secret)]
        if conn.connection is not None and threading.current_thread() is not threading.main_thread():
            pids.add(conn.connection.info.backend_pid)  # the main thread's is the test's own connection
        return value

    env.setattr(DatabaseSecretBackend, "get", spy)
    with secrets_settings(backend="db", encryption_key=KEY_A):
        yield pids, threads
    if pids:
        _terminate_and_wait(set(pids))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("conn_max_age", [0, None], ids=["conn_max_age=0", "persistent"])
def test_db_backend_survives_a_terminated_connection(
    spied_db_backend: tuple[set[int], list[int]], conn_max_age: int | None, env: pytest.MonkeyPatch
) -> None:
    """After pg_terminate_backend of the connection a lookup used, the next lookups work (the broken
    connection is recycled and the query retried), on the same loop and its same pool threads."""
    from django.db import connection

    pids, _ = spied_db_backend
    env.setitem(connection.settings_dict, "CONN_MAX_AGE", conn_max_age)  # shared by every thread's wrapper
    set_secret("STRIPE_KEY", STRIPE)

    async def scenario() -> None:
        assert await aresolve("$secret:STRIPE_KEY") == STRIPE
        assert pids, "the lookup used no connection"
        await asyncio.to_thread(_terminate_and_wait, set(pids))
        for _ in range(5):  # the loop's pool threads, one of them holding the cut connection
            assert await aresolve("$secret:STRIPE_KEY") == STRIPE
        scope = SecretScope()
        assert await scope.aresolve("$secret:STRIPE_KEY") == STRIPE

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_sync_db_lookup_survives_a_terminated_connection(spied_db_backend: tuple[set[int], list[int]]) -> None:
    from django.db import connection

    set_secret("STRIPE_KEY", STRIPE)
    connection.ensure_connection()
    own = connection.connection.info.backend_pid
    assert resolve("$secret:STRIPE_KEY") == STRIPE
    _terminate_and_wait({own})
    try:
        assert resolve("$secret:STRIPE_KEY") == STRIPE  # reconnected and retried, outside a transaction
    finally:
        connection.close()  # on failure, the broken connection must not reach the teardown


@pytest.mark.django_db(transaction=True)
def test_async_db_lookups_do_not_queue_behind_one_thread(spied_db_backend: tuple[set[int], list[int]]) -> None:
    """Two lookups at once run in two threads (asgiref's thread_sensitive default would run both in one)."""
    set_secret("STRIPE_KEY", STRIPE)
    _, threads = spied_db_backend
    both_inside = threading.Barrier(2, timeout=30)
    original = DatabaseSecretBackend._fetch

    def meet(model: Any, alias: str, name: str) -> str | None:
        both_inside.wait()  # a BrokenBarrierError unless the other lookup is running at the same time
        return original(model, alias, name)

    async def scenario() -> list[str]:
        return list(await asyncio.gather(aresolve("STRIPE_KEY"), aresolve("STRIPE_KEY")))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DatabaseSecretBackend, "_fetch", staticmethod(meet))
        assert asyncio.run(scenario()) == [STRIPE, STRIPE]
    assert len(set(threads)) == 2


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_secret_store_is_a_transient_error_without_values(
    spied_db_backend: tuple[set[int], list[int]], env: pytest.MonkeyPatch
) -> None:
    """The connection is cut and the server refuses a new one: SecretBackendUnavailable, a ConnectionError
    (so the worker retries the step), naming the secret and never its value or the key."""
    from django.db import connection

    from automate.connectors.base import classify_failure
    from automate.secret_backends import SecretBackendUnavailable

    set_secret("STRIPE_KEY", STRIPE)
    pids, _ = spied_db_backend

    async def scenario() -> BaseException:
        env.setitem(connection.settings_dict, "CONN_MAX_AGE", None)
        assert await aresolve("$secret:STRIPE_KEY") == STRIPE
        await asyncio.to_thread(_terminate_and_wait, set(pids))
        env.setitem(connection.settings_dict, "NAME", "automate_no_such_database")  # reconnects fail
        try:
            with pytest.raises(SecretBackendUnavailable) as excinfo:
                await aresolve("$secret:STRIPE_KEY")
        finally:
            env.undo()  # before anything else connects
        return excinfo.value

    exc = asyncio.run(scenario())
    assert isinstance(exc, ConnectionError) and classify_failure(exc) == (True, None)
    assert "STRIPE_KEY" in str(exc) and "database is unavailable" in str(exc)
    assert STRIPE not in str(exc) and KEY_A not in str(exc)
