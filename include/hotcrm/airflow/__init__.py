"""Airflow adapters: hooks that turn connections into plain settings, and thin operators.

This is the only ``hotcrm`` package that imports Airflow. DAG files import from here. Importing
it makes the core's secret settings come from Airflow's secrets backend
(:mod:`hotcrm.airflow.secrets`).
"""

from hotcrm.airflow import secrets as _secrets

_secrets.install()
