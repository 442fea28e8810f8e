"""`python -m shardrun.emulator`: the same as `shardrun emulator`."""

from .command import emulator_command

if __name__ == "__main__":
    emulator_command(prog_name="python -m shardrun.emulator")
