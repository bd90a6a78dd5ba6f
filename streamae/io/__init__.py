"""Sources and sinks: files now; Kafka and memory beside them."""
