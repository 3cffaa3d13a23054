# The Airflow image with HotCRM's pinned dependencies; docker-compose.yaml builds it.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /requirements.txt
ENV PYTHONPATH=/opt/airflow/include
