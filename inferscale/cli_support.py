"""What every subcommand of the ``inferscale`` command line shares: errors, tables, addresses, tokens and channels."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from inferscale.auth import CLIENT_TOKEN_VARIABLE, SERVICE_TOKEN_VARIABLE, bearer_metadata
from inferscale.rpc import open_blocking_channel
from inferscale.settings import env_str
from inferscale.suite import REPO_ROOT, SuitePorts
from inferscale.tls import process_tls
from inferscale.v1 import common_pb2

RESULTS = REPO_ROOT / "results"
DEFAULT_STATE_FILE = RESULTS / "suite.json"
# Exit statuses, as the command line's docstring lists them.
EXIT_FAILED = 1
EXIT_REFUSED = 2
# A request's deadline, as the router's own default plan deadline (INFERSCALE_REQUEST_TIMEOUT_SECONDS).
RPC_TIMEOUT_SECONDS = 30.0


class CliError(Exception):
    """A failure the user can act on; main prints ``error: <message>`` and exits with ``status``."""

    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Output


def make_console(stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr); wide enough for the tables when piped."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured output defaults to 80 columns, which folds the step table's reasons.
        console = Console(stderr=stderr, width=160)
    return console


def make_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    numeric: Collection[str] = (),
) -> Table:
    """Builds a table; cells are plain text so that brackets in server messages are never markup."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in numeric else "left",
            no_wrap=column not in {"reason", "problem"},
        )
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
    return table


def _enum_label(name: str, prefix: str) -> str:
    """``DECISION_ACCEPT`` -> ``accept``: the enum names without their proto prefix."""
    return name.removeprefix(prefix).lower()


def decision_label(decision: int) -> str:
    """``DECISION_ESCALATE`` -> ``escalate``."""
    return _enum_label(common_pb2.Decision.Name(decision), "DECISION_")


def strategy_label(strategy: int) -> str:
    """``STRATEGY_BEST_OF_N`` -> ``best_of_n``: the name ``--strategy`` takes."""
    return _enum_label(common_pb2.Strategy.Name(strategy), "STRATEGY_")


def strategy_choices() -> list[str]:
    """The strategies a request may name, read from the contract so that a new one needs no change here."""
    return [strategy_label(number) for number in common_pb2.Strategy.values() if number]


def cache_level_label(level: int) -> str:
    """``CACHE_LEVEL_L4_FINAL_RESULT`` -> ``L4 final result``; no level -> ``none``."""
    if level == common_pb2.CACHE_LEVEL_UNSPECIFIED:
        return "none"
    name = common_pb2.CacheLevel.Name(level).removeprefix("CACHE_LEVEL_")
    tier, _, rest = name.partition("_")
    return f"{tier} {rest.lower().replace('_', ' ')}"


# ---------------------------------------------------------------------------------------------
# Addresses, tokens and channels


def default_address(service: str) -> str:
    """The address the services themselves would use for ``service``: its variable, else the default port."""
    return env_str(
        f"INFERSCALE_{service.upper()}_ADDRESS", f"127.0.0.1:{getattr(SuitePorts(), service)}"
    )


def resolve_address(value: str | None, service: str) -> str:
    """The address given on the command line, else the default; refuses a service switched off."""
    address = value or default_address(service)
    if address == "off":
        raise CliError(f"INFERSCALE_{service.upper()}_ADDRESS is 'off': pass --{service} HOST:PORT")
    return address


def address_option(parser: argparse.ArgumentParser, service: str) -> None:
    """Adds ``--<service> ADDR`` to a subcommand that calls ``service``."""
    default = f"127.0.0.1:{getattr(SuitePorts(), service)}"
    parser.add_argument(
        f"--{service}",
        metavar="ADDR",
        help=f"the {service}'s host:port (default: $INFERSCALE_{service.upper()}_ADDRESS, else {default})",
    )


def read_state(path: pathlib.Path) -> dict[str, Any] | None:
    """The state file of a suite `inferscale up` runs; None when there is none."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read the state file {path}: {error}", EXIT_FAILED) from None


def suite_token(variable: str) -> str:
    """A token from the environment, else from the credentials of the suite `inferscale up` runs
    (named by its default state file), so that `up` and then `infer` work with no setting."""
    token = os.environ.get(variable, "").strip()
    if token:
        return token
    state = read_state(DEFAULT_STATE_FILE) or {}
    try:
        lines = pathlib.Path(state.get("credentials", "")).read_text().splitlines() if state.get("credentials") else []
    except OSError:
        return ""
    return next((line.split("=", 1)[1] for line in lines if line.startswith(f"{variable}=")), "")


def client_metadata() -> list[tuple[str, str]]:
    """The client token for the router ($INFERSCALE_CLIENT_TOKEN, else the suite `up` started)."""
    return bearer_metadata(suite_token(CLIENT_TOKEN_VARIABLE))


@contextlib.contextmanager
def open_stub(address: str, stub_class: Callable[[grpc.Channel], Any]) -> Iterator[Any]:
    """A stub of ``stub_class`` on a blocking channel to ``address``, closed on leaving."""
    # The suite's services need the service token ($INFERSCALE_SERVICE_TOKEN); calls to the router
    # and admin calls carry their own token, which takes its place.
    with open_blocking_channel(address, process_tls(), token=suite_token(SERVICE_TOKEN_VARIABLE)) as channel:
        yield stub_class(channel)


def rpc_error(error: grpc.RpcError, address: str) -> CliError:
    """Turns a gRPC failure into ``CODE: details``, with a hint when nothing answers at all."""
    code = error.code()
    message = f"{code.name}: {error.details()}"
    if code == grpc.StatusCode.UNAVAILABLE:
        message += f" (is the suite up at {address}? `inferscale up`, or pass the address)"
    return CliError(message, EXIT_REFUSED)
