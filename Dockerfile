# The HotCRM Pipelines image: Airflow with HotCRM's production pins, and the DAGs, the plugin and
# the hotcrm package baked in, so every component (api-server, scheduler, dag-processor,
# triggerer, workers, the migration job) runs the same code. docker-compose.yaml and the Helm
# values in helm/ use it. Test and dev tools (requirements-dev.txt) are not installed.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 requirements.txt /requirements.txt
# apache-airflow is named again so pip cannot move it while resolving our pins.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements.txt
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
# The hotcrm package installed (editable: its config and migrations stay in include/), so its
# `apache_airflow_provider` entry point registers it: `airflow providers list` shows it and the
# UI's connection form knows its connection types. No dependencies: the pins above are all.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
# HotCRM's local working folder (temporary files; the data itself is in the bucket and the database).
RUN mkdir -p /opt/airflow/data
ENV PYTHONPATH=/opt/airflow/include \
    HOTCRM_DATA_DIR=/opt/airflow/data
