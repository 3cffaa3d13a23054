"""Demo step of the REST API: create an API key, serve the app under uvicorn on a free
loopback port, create and convert a lead through the API and print the responses."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import uvicorn

from hotcrm.api import auth
from hotcrm.api.standalone import create_standalone_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _show(title: str, response: httpx.Response) -> str:
    print(f"--- {title}: HTTP {response.status_code}")
    print(json.dumps(response.json(), indent=2))
    return f"{title}: HTTP {response.status_code}"


def run(ctx) -> list[str]:
    """Create a key, start the API, create and convert a lead through it; the key is revoked at the end."""
    created = auth.create_api_key(ctx.database_url, "make demo", ["leads:read", "leads:write", "leads:convert"])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_standalone_app(ctx.database_url), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}/hotcrm/api/v1"
        lines = [f"API served on {base} (OpenAPI: {base}/openapi.json, docs: {base}/docs)"]
        lines.append(f"API key {created.id} created with scopes {' '.join(created.scopes)} (shown once, not here)")
        with httpx.Client(base_url=base, headers={"X-API-Key": created.key}, timeout=30) as client:
            stamp = int(time.time())
            lead = client.post(
                "/crm/leads",
                json={
                    "firstName": "Grace",
                    "lastName": "Hopper",
                    "company": f"Compilers Inc {stamp}",
                    "email": f"grace.hopper+{stamp}@example.com",
                    "phone": "+1 (415) 555-0199",
                    "industry": "Technology",
                    "estimatedValue": 48000,
                },
            )
            lines.append(_show("POST /crm/leads", lead))
            lead.raise_for_status()
            lead_id = lead.json()["data"]["Id"]
            converted = client.post(f"/crm/leads/{lead_id}/convert", json={"createOpportunity": True})
            lines.append(_show(f"POST /crm/leads/{lead_id}/convert", converted))
            converted.raise_for_status()
            data = converted.json()["data"]
            lines.append(
                f"lead {lead_id} converted: account {data['account']['Id']}, contact {data['contact']['Id']}, "
                f"opportunity {data['opportunity']['Id']} (amount {data['opportunity']['Amount']})"
            )
            again = client.post(f"/crm/leads/{lead_id}/convert", json={"createOpportunity": True})
            lines.append(_show("converting it again", again) + f" {again.json()['code']}")
            anonymous = httpx.get(f"{base}/crm/leads/{lead_id}")
            lines.append(f"without a key: HTTP {anonymous.status_code} {anonymous.json()['code']}")
        return lines
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        auth.revoke_api_key(ctx.database_url, created.id)
