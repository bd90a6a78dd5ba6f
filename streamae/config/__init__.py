"""Typed, validated configuration.

Every section is a frozen pydantic dataclass; its defaults *are* the packaged default
config. A YAML file only overrides what it names. Unknown fields, wrong types and values
out of range fail at start-up with the field path, the bad value and what is allowed.

- :mod:`~streamae.config.detection`: data, window, model, train, calibration, novelty,
  threshold, alarm
- :mod:`~streamae.config.service`: scoring, kafka, input, daemon
- :mod:`~streamae.config.updater`: updater (buffer, triggers, finetune, gate, relearn)
- :mod:`~streamae.config.root`: the whole config and the checks across sections
- :mod:`~streamae.config.loader`: YAML and overrides -> a validated config
- :mod:`~streamae.config.render`: plain data, secrets masked, commented YAML
- :mod:`~streamae.config.schema`: the JSON Schema of a config file
"""

from streamae.config.detection import (MEMBER_CONFIGS, MODEL_CONFIGS, AlarmConfig,
                                       CalibrationConfig, DataConfig, EnsembleConfig,
                                       LinearConfig, LSTMConfig, MemberConfig, ModelConfig,
                                       NoveltyConfig,
                                       ThresholdConfig, TrainConfig, TransformerConfig,
                                       WindowConfig)
from streamae.config.loader import (config_from_dict, load_config, model_config_from_dict,
                                    with_overrides)
from streamae.config.render import (SECRET_FIELD, commented_yaml, config_to_dict, masked,
                                    public_dict)
from streamae.config.root import Config, model_parts
from streamae.config.schema import config_schema
from streamae.config.service import DaemonConfig, InputConfig, KafkaConfig, ScoringConfig
from streamae.config.updater import (FineTuneConfig, GateConfig, RelearnConfig,
                                     ReplayBufferConfig, TriggerConfig, UpdaterConfig)

__all__ = [
    "AlarmConfig", "CalibrationConfig", "Config", "DaemonConfig", "DataConfig",
    "EnsembleConfig", "FineTuneConfig", "GateConfig", "InputConfig", "KafkaConfig",
    "LSTMConfig", "LinearConfig", "MEMBER_CONFIGS", "MODEL_CONFIGS", "MemberConfig",
    "ModelConfig", "NoveltyConfig", "RelearnConfig", "ReplayBufferConfig",
    "SECRET_FIELD", "ScoringConfig", "ThresholdConfig", "TrainConfig",
    "TransformerConfig", "TriggerConfig", "UpdaterConfig", "WindowConfig",
    "commented_yaml", "config_from_dict", "config_schema", "config_to_dict",
    "load_config", "masked", "model_config_from_dict", "model_parts", "public_dict",
    "with_overrides",
]
