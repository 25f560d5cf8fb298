"""aws-overlayip: its declaration (parameters, Config) and its actions."""
