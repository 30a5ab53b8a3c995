"""Subcommands of ``nl-lightning`` beyond LightningCLI's fit / validate / test / predict."""
