"""The built-in plugins of atomdesc: each module registers through the same hooks as a third party."""
