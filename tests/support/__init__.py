"""Test servers on loopback (PostgreSQL, S3) and helpers shared by the test suites."""
