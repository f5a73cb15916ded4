"""Configuration: the settings class, Kafka client configs and credential-carrying URLs."""
