"""Small run configs for the wsebench tests (a module with a unique name, since several test
folders have a conftest.py and `import conftest` would find whichever was imported last)."""
from tests.configs import tiny_config, tiny_family_config

__all__ = ["tiny_config", "tiny_family_config"]
