"""The `provgate` command line: one root to which each package adds its subcommands."""
