"""The ``salesforce_default`` connection as a :class:`~hotcrm.salesforce.client.SalesforceClient`.

Login flows (``auth_type`` in the connection's extra; default ``password``):

- ``password``: login, password, extra ``security_token``, ``consumer_key``, ``consumer_secret``;
- ``client_credentials``: extra ``consumer_key``, ``consumer_secret``;
- ``jwt_bearer``: login (the user), extra ``consumer_key`` and ``private_key`` or
  ``private_key_file_path``;
- ``session``: an existing session: password = access token, extra ``instance_url``;
- ``refresh_token``: the refresh token stored by the REST API's "connect a Salesforce org"
  flow (read with ``hotcrm.api.salesforce_oauth.load_refresh_token`` and the key in extra
  ``token_encryption_key`` or ``HOTCRM_TOKEN_KEY``), else the connection's password;
  extra ``consumer_key`` (and ``consumer_secret``).

Without a ``token_url`` in the extra, ``password``, ``client_credentials``, ``jwt_bearer``
and ``session`` go through the Airflow Salesforce provider's ``SalesforceHook`` (and
simple-salesforce's own login against ``login``/``test``/My Domain). simple-salesforce can
only log in at ``https://{domain}.salesforce.com``, so with a ``token_url`` (the emulator in
tests and the demo, or any non-standard login host) this hook posts the OAuth 2.0 grant to
that URL itself. Extra ``ca_bundle`` names a PEM file to verify the server with. No secret
is ever logged or put in an error message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk import BaseHook

from hotcrm.airflow import connection_forms as forms
from hotcrm.airflow.connection_forms import AUTH_TYPES
from hotcrm.airflow.hooks import ConnectionForm, strip_extra_prefix
from hotcrm.settings import secret

log = logging.getLogger(__name__)

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_DEFERRALS = 4


class SalesforceLoginError(RuntimeError):
    """Logging in failed; the message names the connection and the OAuth error, never a secret."""


class HotCrmSalesforceHook(ConnectionForm, BaseHook):
    """Builds the sync's Salesforce client from the ``salesforce_default`` connection.

    Its own connection type, ``hotcrm_salesforce`` (the Salesforce provider owns ``salesforce``,
    whose form lacks the login flow, token URL and budget share); a connection of type
    ``salesforce`` works too, the fields being read the same way.
    """

    conn_name_attr = "salesforce_conn_id"
    default_conn_name = "salesforce_default"
    conn_type = "hotcrm_salesforce"
    hook_name = "HotCRM Salesforce"
    conn_fields = forms.SALESFORCE_FIELDS
    field_behaviour = forms.SALESFORCE_BEHAVIOUR

    def __init__(self, salesforce_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.salesforce_conn_id = salesforce_conn_id
        self._conn = None

    # --- connection -------------------------------------------------------------------------------

    @property
    def connection(self):
        """The Airflow connection (read once)."""
        if self._conn is None:
            self._conn = self.get_connection(self.salesforce_conn_id)
        return self._conn

    @property
    def extra(self) -> dict[str, Any]:
        """The connection's extra, with the provider's ``extra__salesforce__`` prefix removed."""
        return strip_extra_prefix(self.connection.extra_dejson, "salesforce", self.conn_type)

    @property
    def auth_type(self) -> str:
        """The login flow this connection uses."""
        auth_type = self.extra.get("auth_type") or (
            "session" if self.extra.get("instance_url") and not self.connection.login else "password"
        )
        if auth_type not in AUTH_TYPES:
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: auth_type {auth_type!r} is not supported; "
                f"use one of {', '.join(AUTH_TYPES)}"
            )
        return auth_type

    @property
    def verify(self) -> bool | str:
        """What to verify TLS with: the extra's ``ca_bundle`` file, or the system's CAs."""
        return self.extra.get("ca_bundle") or True

    @property
    def api_version(self) -> str:
        """The REST API version (extra ``version``)."""
        from hotcrm.salesforce.client import DEFAULT_API_VERSION

        return str(self.extra.get("version") or DEFAULT_API_VERSION)

    # --- login --------------------------------------------------------------------------------------

    def login(self) -> tuple[str, str]:
        """A fresh ``(access_token, instance_url)`` by the connection's flow."""
        auth_type = self.auth_type
        token_url = self.extra.get("token_url")
        if auth_type == "refresh_token":
            token_url = (
                token_url or f"https://{self.extra.get('domain') or 'login'}.salesforce.com/services/oauth2/token"
            )
            return self._token_grant(token_url, self._refresh_token_form())
        if token_url:
            if auth_type == "session":
                return self._session()
            return self._token_grant(token_url, self._grant_form(auth_type, token_url))
        return self._provider_login()

    def _session(self) -> tuple[str, str]:
        token = self.connection.password or self.extra.get("access_token")
        instance_url = self.extra.get("instance_url")
        if not token or not instance_url:
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: auth_type 'session' needs the access token as password "
                "and 'instance_url' in the extra"
            )
        return token, instance_url

    def new_session(self):
        """The ``requests`` session every Salesforce call of this hook goes through (logins
        included): TLS verified with the extra's ``ca_bundle`` or the system's CAs."""
        import requests

        session = requests.Session()
        session.verify = self.verify
        if self.extra.get("ca_bundle"):
            session.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify
        return session

    def _provider_login(self) -> tuple[str, str]:
        """Log in through the Airflow Salesforce provider's hook (simple-salesforce)."""
        from airflow.providers.salesforce.hooks.salesforce import SalesforceHook
        from simple_salesforce.exceptions import SalesforceAuthenticationFailed

        session_id = self.connection.password if self.auth_type == "session" else None
        hook = SalesforceHook(
            salesforce_conn_id=self.salesforce_conn_id, session_id=session_id, session=self.new_session()
        )
        try:
            sf = hook.conn
        except SalesforceAuthenticationFailed as exc:
            # Salesforce's own error code and description (OAuth error/error_description or the
            # SOAP fault's exceptionCode/exceptionMessage): they carry no secret.
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: Salesforce login ({self.auth_type}) failed: "
                f"{exc.code}: {getattr(exc, 'auth_message', '')}; check the connection's credentials and its domain "
                "(login, test or the org's My Domain)"
            ) from None
        except TypeError:  # simple-salesforce found no login method in the connection's fields
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: no login method in its fields: auth_type 'password' needs "
                "login, password and security_token in the extra (or consumer_key and consumer_secret); "
                "'jwt_bearer' needs login, consumer_key and private_key; 'client_credentials' needs consumer_key, "
                "consumer_secret and domain (the org's My Domain, e.g. 'acme.my')"
            ) from None
        except Exception as exc:  # anything else: its type only (a message could quote a secret)
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: Salesforce login ({self.auth_type}) failed: "
                f"{type(exc).__name__}"
            ) from None
        return sf.session_id, f"https://{sf.sf_instance}"

    def _grant_form(self, auth_type: str, token_url: str) -> dict[str, str]:
        conn, extra = self.connection, self.extra
        if auth_type == "password":
            return {
                "grant_type": "password",
                "client_id": extra.get("consumer_key", ""),
                "client_secret": extra.get("consumer_secret", ""),
                "username": conn.login or "",
                "password": (conn.password or "") + (extra.get("security_token") or ""),
            }
        if auth_type == "client_credentials":
            return {
                "grant_type": "client_credentials",
                "client_id": extra.get("consumer_key", ""),
                "client_secret": extra.get("consumer_secret", ""),
            }
        return {"grant_type": JWT_GRANT, "assertion": self._jwt_assertion(token_url)}

    def _jwt_assertion(self, token_url: str) -> str:
        import jwt

        extra = self.extra
        key = extra.get("private_key")
        if not key and extra.get("private_key_file_path"):
            with open(extra["private_key_file_path"], encoding="utf-8") as handle:
                key = handle.read()
        if not key or not extra.get("consumer_key") or not self.connection.login:
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: auth_type 'jwt_bearer' needs login (the user), "
                "'consumer_key' and 'private_key' or 'private_key_file_path' in the extra"
            )
        audience = extra.get("audience") or token_url.split("/services/")[0]
        claims = {
            "iss": extra["consumer_key"],
            "sub": self.connection.login,
            "aud": audience,
            "exp": int(time.time()) + 180,
        }
        return jwt.encode(claims, key, algorithm="RS256")

    def _refresh_token_form(self) -> dict[str, str]:
        token = None
        key = self.extra.get("token_encryption_key") or secret("HOTCRM_TOKEN_KEY")
        if key:
            from hotcrm.airflow.hooks import HotCrmDatabaseHook
            from hotcrm.api.salesforce_oauth import load_refresh_token

            token = load_refresh_token(HotCrmDatabaseHook().get_database_url(), key)
        token = token or self.connection.password
        if not token:
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: no refresh token: connect the org through the REST API "
                "(GET /hotcrm/api/v1/oauth/salesforce/authorize) or put the refresh token in the password"
            )
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": self.extra.get("consumer_key", "")}
        if self.extra.get("consumer_secret"):
            form["client_secret"] = self.extra["consumer_secret"]
        return form

    def _token_grant(self, token_url: str, form: dict[str, str]) -> tuple[str, str]:
        import requests

        try:
            response = self.new_session().post(token_url, data=form, timeout=60)
        except requests.RequestException as exc:
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: cannot reach the token URL {token_url}: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            raise SalesforceLoginError(
                f"connection {self.salesforce_conn_id!r}: {form['grant_type']} login at {token_url} failed: "
                f"HTTP {response.status_code} {body.get('error', '')}: {body.get('error_description', '')}; "
                "check the connection's credentials"
            )
        log.info("Logged in to Salesforce (%s) at %s", self.auth_type, body.get("instance_url"))
        return body["access_token"], body.get("instance_url") or token_url.split("/services/")[0]

    # --- clients -------------------------------------------------------------------------------------

    def get_client(self, **options: Any):
        """A logged-in :class:`~hotcrm.salesforce.client.SalesforceClient` that logs in again when
        its session expires. ``budget_share`` defaults to the extra's ``api_budget_share`` (0.9)."""
        from hotcrm.salesforce.client import SalesforceClient

        token, instance_url = self.login()
        options.setdefault("budget_share", float(self.extra.get("api_budget_share", 0.9)))
        relogin = None if self.auth_type == "session" else self.login
        session = self.new_session()
        return SalesforceClient(
            instance_url,
            token,
            api_version=self.api_version,
            verify=session.verify,
            login=relogin,
            session=session,
            **options,
        )

    def get_conn(self):
        """A simple-salesforce ``Salesforce`` on the same session (for ad-hoc SOQL and describes)."""
        from simple_salesforce import Salesforce

        token, instance_url = self.login()
        return Salesforce(
            session_id=token, instance_url=instance_url, version=self.api_version, session=self.new_session()
        )


def run_salesforce_sync(
    params: dict[str, Any],
    run_id: str,
    *,
    bulk_wait_seconds: float | None = None,
    salesforce_conn_id: str = HotCrmSalesforceHook.default_conn_name,
    hotcrm_db_conn_id: str = "hotcrm_db",
) -> dict[str, Any]:
    """One sync: the options (``objects``, ``dry_run``, ``full``, ``limit``, ``transport``) →
    :class:`SyncOptions`, the ``hotcrm_db`` and ``salesforce_default`` connections →
    :func:`run_sync`; returns its summary.

    Settings: ``HOTCRM_SALESFORCE_BULK_THRESHOLD`` (records from which ``auto`` uses Bulk API
    2.0), ``HOTCRM_SALESFORCE_BULK_MAX_BYTES`` (CSV bytes per job, default 100 MB),
    ``HOTCRM_SALESFORCE_BULK_WAIT_SECONDS`` (how long the task waits for its jobs)."""
    from hotcrm.airflow.hooks import HotCrmDatabaseHook
    from hotcrm.salesforce.settings import BulkSettings
    from hotcrm.salesforce.sync import SyncOptions, run_sync

    bulk = BulkSettings.from_env()
    if bulk_wait_seconds is None:
        bulk_wait_seconds = bulk.wait_seconds
    options = SyncOptions(
        objects=tuple(params.get("objects") or ("Account", "Contact")),
        dry_run=bool(params.get("dry_run")),
        full=bool(params.get("full")),
        limit=params.get("limit"),
        transport=params.get("transport") or "auto",
        bulk_threshold=bulk.threshold,
        bulk_max_bytes=bulk.max_bytes,
        bulk_wait_seconds=bulk_wait_seconds,
        run_id=run_id,
    )
    options.validate()  # bad options fail before any login
    client = None if options.dry_run else HotCrmSalesforceHook(salesforce_conn_id).get_client()
    summary = run_sync(HotCrmDatabaseHook(hotcrm_db_conn_id).get_database_url(), client, options)
    (log.warning if summary["outcome"] == "partial" else log.info)(
        "Salesforce sync %s: %s", summary["outcome"], summary["message"]
    )
    return summary


def fail_if_partial(summary: dict[str, Any]) -> str:
    """The ``outcome`` task: a partial sync (API budget reached, retries exhausted) fails here,
    without retries, so the run shows red in the UI with the reason; everything already sent is
    written back and the next run resumes with what is left. Returns the outcome otherwise."""
    from airflow.sdk.exceptions import AirflowFailException

    if summary["outcome"] == "partial":
        skipped = summary.get("totals", {}).get("skipped", 0)
        raise AirflowFailException(
            f"Salesforce sync ended partial: {summary['message']}. {skipped} records were left for the "
            "next run (results already received are written back); see salesforce_sync_runs."
        )
    return summary["outcome"]


def __getattr__(name: str) -> Any:
    # The operator moved to hotcrm.airflow.operators (with every HotCRM operator); old imports keep working.
    if name == "HotCrmSalesforceSyncOperator":
        from hotcrm.airflow.operators import HotCrmSalesforceSyncOperator

        return HotCrmSalesforceSyncOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
