"""aws-health: AWS's instance events as the node health attribute ``#health-aws``."""
