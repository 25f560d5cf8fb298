"""aws-eni: its declaration, the attach/detach decision table, the OS plan, the state record,
and the actions."""
