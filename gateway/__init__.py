"""The site service: provenance ledger, rules, MQTT verification, HTTP API, metrics."""
