"""The `srprior` commands: one thin argparse module per command (its `register`), each over a library function
(srprior.cli lists them). A new command is a module here plus its name in srprior.cli.COMMAND_MODULES."""
