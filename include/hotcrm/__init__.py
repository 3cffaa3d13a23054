"""HotCRM Pipelines: the integration layer of the HotCRM CRM.

Core packages (``crm``, ``leads``, ``exports``, ``salesforce``, ``webhooks``, ``delivery``,
``email``, ``quality``, ``maintenance``, ``api``, ``web``, ``ui``) and modules (``settings``,
``storage``, ``retry``, ``spreadsheet``, ...) take plain settings and never import Airflow nor
``hotcrm.airflow``, which holds the hooks and operators that turn Airflow connections into
those settings (``tests/unit/test_architecture.py`` checks it; ``docs/ARCHITECTURE.md``).
"""
