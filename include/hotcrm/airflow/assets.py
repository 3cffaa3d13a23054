"""The project's Airflow assets, in one place and under one URI scheme (``hotcrm://``).

Names and URIs are stable whatever the bucket is: downstream DAGs schedule on them. Each
event's extra carries the details (a published file's URL, record count, sha256).
"""

from __future__ import annotations

from airflow.sdk import Asset

# Leads imported into the CRM (updated by every lead file's import).
LEADS_ASSET = Asset(name="hotcrm_leads", uri="hotcrm://crm/leads")
# A published Account export file and its manifest under exports/accounts/.
ACCOUNTS_EXPORT_ASSET = Asset(name="hotcrm_account_export", uri="hotcrm://exports/accounts")

__all__ = ["ACCOUNTS_EXPORT_ASSET", "LEADS_ASSET"]
