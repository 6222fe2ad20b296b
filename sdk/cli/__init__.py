"""The ``edgewise`` command line. ``add_command_group`` is the one way a command group (an
SDK command or an app's ``register(subparsers)``) is made."""
from sdk.cli.groups import add_command_group

__all__ = ["add_command_group"]
