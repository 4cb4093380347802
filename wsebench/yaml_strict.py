"""YAML as configs read it: `safe_load` semantics, but a key given twice in one mapping is an
error (plain YAML keeps the last one silently, so a typo'd override would pass unnoticed)."""
from __future__ import annotations

from typing import Hashable


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
