"""館・分館 (branches and other service points): data, not code."""
