"""Salesforce sync: mapping, change detection, the REST client and the sync engine (no Airflow)."""
