"""The `stablenew` command line."""
