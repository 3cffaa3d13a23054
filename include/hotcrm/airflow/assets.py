"""Every Airflow asset of HotCRM, defined once, with one URI scheme: ``x-hotcrm://``.

The ``x-`` prefix is Airflow's for schemes no provider defines: such a URI is taken as it is,
where any other scheme makes Airflow load every provider's URI handlers to normalize it (up to
half a second of each DAG file's parse; BENCHMARKS.md "DAG parse cost").

DAGs (and other teams' DAGs) schedule on these names and URIs; they do not depend on the
bucket or database behind them, which differ between environments.

- ``LEAD_FILES``: lead files waiting in ``imports/leads/incoming/``. Its watcher
  (:class:`hotcrm.airflow.watchers.LeadFilesTrigger`, run by the triggerer) fires an event
  when files arrive; ``lead_import`` is scheduled on it.
- ``LEADS``: the CRM's Leads, updated by each file ``lead_import`` imports.
- ``ACCOUNT_EXPORT``: the published account export; each event's extra has the file's URL,
  record count and sha256.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetWatcher

from hotcrm.airflow.watchers import INCOMING_PREFIX, LeadFilesTrigger
from hotcrm.exports.options import EXPORT_PREFIX

SCHEME = "x-hotcrm"

LEAD_FILES = Asset(
    name="hotcrm_lead_files",
    uri=f"{SCHEME}://{INCOMING_PREFIX}",
    watchers=[AssetWatcher(name="hotcrm_lead_files_watcher", trigger=LeadFilesTrigger())],
)
LEADS = Asset(name="hotcrm_leads", uri=f"{SCHEME}://crm/leads")
ACCOUNT_EXPORT = Asset(name="hotcrm_account_export", uri=f"{SCHEME}://{EXPORT_PREFIX}")

ALL_ASSETS = (LEAD_FILES, LEADS, ACCOUNT_EXPORT)
