"""Monitoring and continuous training: drift, staleness, live quality, alerts and retrain triggers."""
