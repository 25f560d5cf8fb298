"""This host's side: netlink reading and writing, and the records kept in HA_RSCTMP."""
