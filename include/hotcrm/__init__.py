"""HotCRM Pipelines: the integration layer of the HotCRM CRM.

Core packages (``crm``, ``leads``, ``exports``, ``salesforce``, ``webhooks``, ``email``,
``quality``, ``api``) take plain settings and never import Airflow; ``hotcrm.airflow`` holds
the hooks and operators that turn Airflow connections into those settings.
"""
