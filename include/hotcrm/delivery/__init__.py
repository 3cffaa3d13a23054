"""Outbound webhooks: subscriptions, fan-out of outbox events into deliveries, signed
concurrent POSTs with retries, dead letters and replay (see :mod:`hotcrm.delivery.service`)."""
