"""Sources and sinks: files (``files``), Kafka records as frames with their dead letters
(``kafka_records``, the daemon's source) and a Kafka topic range (``topic_range``, a
backtest's source and its events' sink)."""
