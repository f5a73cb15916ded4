"""Training: the autoencoder, fitting and calibrating a version, continual refits, the IsolationForest baseline."""
