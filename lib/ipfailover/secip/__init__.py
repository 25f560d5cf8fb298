"""aws-secip: its declaration (parameters, Config), the pure plan and the actions."""
