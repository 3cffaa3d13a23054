"""moto's S3 server on loopback, for ``s3://`` tests."""

from __future__ import annotations

import json
import logging

from moto.server import ThreadedMotoServer

from tests.support.postgres import free_port

TEST_BUCKET = "hotcrm-test"


class S3Server:
    """A moto S3 server on 127.0.0.1 with fake credentials."""

    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, free_port()
        self._server = ThreadedMotoServer(ip_address=host, port=self.port, verbose=False)

    @property
    def endpoint_url(self) -> str:
        """Where the server listens."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        """Start serving (quietly: werkzeug would log every request)."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def client(self):
        """A boto3 S3 client for the server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> str:
        """Create a bucket (fresh for each test that asks); returns its ``s3://`` URL."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def airflow_connection_json(self) -> str:
        """An ``aws`` Airflow connection (for ``AIRFLOW_CONN_HOTCRM_BUCKET``) aimed at this server."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": self.access_key,
                "password": self.secret_key,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": self.region},
            }
        )
