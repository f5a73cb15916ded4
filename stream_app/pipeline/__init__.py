"""A reading's path as pure steps (no Kafka, Redis, Faust or settings): decode, route, window, score, line, episodes."""
