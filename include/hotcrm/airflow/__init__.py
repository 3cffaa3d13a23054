"""The HotCRM Airflow provider: operators (:mod:`.operators`), hooks that turn connections into
plain settings (:mod:`.hooks`, forms in :mod:`.connection_forms`), triggers, assets, the tasks
the DAGs share (:mod:`.tasks`) and ``get_provider_info`` (:mod:`.provider`).

This is the only ``hotcrm`` package that imports Airflow. DAG files import from here. Importing
it makes the core's secret settings come from Airflow's secrets backend
(:mod:`hotcrm.airflow.secrets`).
"""

from hotcrm.airflow import secrets as _secrets

_secrets.install()
