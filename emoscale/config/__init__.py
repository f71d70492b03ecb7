"""The run config: its schema, its loading from YAML and `key=value`, and the rules between keys.

May import: `emoscale.errors` and `emoscale.data.registry` (to name the known corpora). Everything
above (models, training, studies, inference, the CLI) imports the config, never the other way.
"""

from emoscale.config.loading import load_config, parse_value, read_yaml, save_config, validate
from emoscale.config.schema import METRICS, DataConfig, RunConfig

__all__ = [
    "METRICS",
    "DataConfig",
    "RunConfig",
    "load_config",
    "parse_value",
    "read_yaml",
    "save_config",
    "validate",
]
