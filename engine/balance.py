"""`python -m engine.balance` keeps working: the command lives in engine/commands/balance.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("engine.commands.balance", run_name="__main__", alter_sys=True)
