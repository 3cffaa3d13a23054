"""The HTTP app: the webhook receiver and the REST API. Imports no Airflow."""
