"""One root exception, so callers can catch everything streamae raises on purpose."""


class StreamaeError(Exception):
    """Root of every error streamae raises deliberately."""


class ConfigError(StreamaeError):
    """A configuration value is missing, of the wrong type or out of range."""


class InputFormatError(StreamaeError):
    """An input file or message does not fit the expected layout."""


class ModelError(StreamaeError):
    """A model checkpoint is missing, corrupt or does not fit the data."""


class KafkaAccessError(StreamaeError):
    """Kafka refused this client: wrong credentials, an untrusted certificate."""
