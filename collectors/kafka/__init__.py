"""Kafka client backends behind one small interface (`collectors.kafka.client`)."""
