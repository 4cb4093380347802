"""Config files as wsebench reads them: UTF-8 text (a binary or unreadable file is a
ConfigError), and YAML with `safe_load` semantics, but a key given twice in one mapping is an
error (plain YAML keeps the last one silently, so a typo'd override would pass unnoticed)."""
from __future__ import annotations

from pathlib import Path
from typing import Hashable

from compiler import ConfigError


def read_text(path: Path, where: str) -> str:
    """The UTF-8 text of a config, grid or sparsity file; a binary or unreadable file is a
    ConfigError."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where} is not UTF-8 text (a binary file?): {err}; give a .json or "
                          f".yaml text file") from None
    except OSError as err:
        raise ConfigError(f"{where} cannot be read: {err.strerror or err}") from None


def load_yaml(text: str, where: str):
    """YAML `text` with every key once per mapping; a syntax error is a ConfigError."""
    import yaml
    try:
        return yaml.load(text, Loader=unique_keys_loader())
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(err).split())}") from None


def unique_keys_loader():
    """A yaml.SafeLoader subclass that refuses a mapping with a key given twice, naming the key
    and its line."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):
                    continue                  # SafeLoader itself refuses an unhashable key
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (give each key once)",
                        key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)
    return UniqueKeyLoader
