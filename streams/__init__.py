"""Everything Kafka: topic catalogue and admin, client factories, the embedded broker, the client SDK."""
