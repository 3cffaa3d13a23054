"""Inbound webhooks: verified on the raw body, stored once in the inbox, applied to the CRM once.

- :mod:`.signatures`: the ``hmac-sha256``, ``standard-webhooks`` and ``stripe`` schemes
  (verify and sign, constant-time, several secrets at once for rotation);
- :mod:`.config`: a source's settings and the pluggable :data:`SourceRegistry`;
- :mod:`.receiver`: the FastAPI router (``POST /webhooks/{source}``, ``GET /webhooks/health``);
- :mod:`.models` and :mod:`.inbox`: the inbox table, storing, claiming, requeueing;
- :mod:`.handlers` and :mod:`.processing`: the payment handlers and the batch processor.

No Airflow imports here: :mod:`hotcrm.airflow.webhooks` adapts connections and the DAG.
"""
