"""The event worker and outbox relay (RabbitMQ + PostgreSQL)."""
