"""xbroker: the service, its SDKs and its CLI."""
