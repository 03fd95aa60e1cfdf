"""What every `inferchain` command shares: options, the keyring, signing keys, output, the node client.

User errors are raised as `CliError` (or any InferchainError/RpcError/OSError) and printed by the top-level
handler in `node.cli` as one line `error: ...` on stderr with exit status 1; never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from core.errors import KeyFileError, RemoteError
from core.keyfile import is_encrypted, load_key
from core.keys import PrivateKey
from core.units import DEFAULT_TOKEN, AmountText, Token, parse_amount_text

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NODE = "http://127.0.0.1:26657"
CLI_HOME_ENV = "INFERCHAIN_HOME"  # this user's inferchain directory: keyring in keys/, default node home in node/
DEFAULT_CLI_HOME = "~/.inferchain"
PASSPHRASE_ENV = "INFERCHAIN_PASSPHRASE"
U64_MAX = 2**64 - 1


def u64(minimum: int = 0) -> click.IntRange:
    """An integer option or argument that fits the chain's u64 amounts, fees, gas and nonces (click refuses
    anything else with a usage error, exit 2, instead of a traceback from deep inside)."""
    return click.IntRange(min=minimum, max=U64_MAX)


class CliError(RemoteError):
    """A mistake in how a command was called or what it was given; the message is the whole story."""


class AmountParam(click.ParamType[AmountText, Any]):
    """An amount as typed (`10ifc`, `2.5ifc`, `1500uifc`, `1500` = base units): its form is checked at once
    (a usage error, exit 2), its value once the chain's token is known (`resolve_amount`)."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> AmountText:
        if isinstance(value, AmountText):
            return value
        try:
            parsed = parse_amount_text(str(value))
            if parsed.unit is None:
                parsed.resolve(DEFAULT_TOKEN)  # base units: the range check needs no token
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return parsed


AMOUNT = AmountParam()


def resolve_amount(amount: AmountText, token: Token, what: str = "AMOUNT", *, minimum: int = 0) -> int:
    """The amount in base units, or a one-line CliError naming the argument."""
    try:
        value = amount.resolve(token)
    except ValueError as exc:
        raise CliError(f"{what}: {exc}") from None
    if value < minimum:
        raise CliError(f"{what}: must be at least {minimum} {token.base}")
    return value


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_genesis() -> Path:
    return repo_root() / "genesis.json"


# ------------------------------------------------------------------------------------------------ options


def default_node_url() -> str:
    """node0 of a devnet running from this checkout (its pid file names its nodes' RPC URLs; another devnet
    directory with $INFERCHAIN_DEVNET_DIR), else the standard local node address: a new terminal next to
    `make devnet` needs no INFERCHAIN_NODE."""
    from node.devnet import pid_alive

    devnet_dir = os.environ.get("INFERCHAIN_DEVNET_DIR")
    pid_file = (Path(devnet_dir) if devnet_dir else repo_root() / ".devnet") / "devnet.pid"
    try:
        doc = json.loads(pid_file.read_text())
        url = doc["rpc"]["0"]
        supervisor = doc.get("supervisor")
        nodes = doc.get("nodes", {})
        alive = [pid for pid in [supervisor, *nodes.values()] if isinstance(pid, int) and pid_alive(pid)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return DEFAULT_NODE
    return url if isinstance(url, str) and alive else DEFAULT_NODE


def node_option(fn: F) -> F:
    return click.option("--node", "node_url", envvar="INFERCHAIN_NODE", default=default_node_url,
                        show_default=f"node0 of the devnet running from this checkout, else {DEFAULT_NODE}",
                        help="RPC URL of the node to talk to (env INFERCHAIN_NODE).")(fn)


def cli_home() -> Path:
    """`$INFERCHAIN_HOME`, else ~/.inferchain: one directory per user (or per project, by setting the variable)."""
    return Path(os.path.expanduser(os.environ.get(CLI_HOME_ENV) or DEFAULT_CLI_HOME))


def default_keyring() -> Path:
    return cli_home() / "keys"


def home_option(fn: F) -> F:
    return click.option("--home", default=lambda: cli_home() / "node",
                        show_default=f"${CLI_HOME_ENV}/node, else {DEFAULT_CLI_HOME}/node",
                        type=click.Path(file_okay=False, path_type=Path), help="Node home directory.")(fn)


def keyring_option(fn: F) -> F:
    return click.option("--keyring", envvar="INFERCHAIN_KEYRING", default=default_keyring,
                        show_default=f"${CLI_HOME_ENV}/keys, else {DEFAULT_CLI_HOME}/keys",
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Directory of named key files (env INFERCHAIN_KEYRING). One keyring serves every "
                             "chain: a name, once taken, is never overwritten.")(fn)


def key_exists_error(name: str, path: Path) -> CliError:
    """A clash in the keyring: say that it is shared and never overwritten, and how to use another one."""
    return CliError(f"a key named {name!r} already exists at {path}; the keyring is shared by every chain and "
                    f"never overwrites a key: choose another name, or another keyring with --keyring DIR "
                    f"(or {CLI_HOME_ENV}=DIR for DIR/keys)")


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def tx_options(fn: F) -> F:
    """Signing and fee options of every transaction command."""
    for decorator in reversed([
        click.option("--from", "from_key", required=True, metavar="KEY",
                     help="Signing key: a name in the keyring or a path to a key file."),
        keyring_option,
        node_option,
        click.option("--fee", type=AMOUNT, default=None,
                     help="Fee, e.g. 0.01ifc or 10000 (base units) (default: gas limit x the minimum gas price)."),
        click.option("--gas-limit", type=u64(1), default=None,
                     help="Gas limit (default: what the chain's gas schedule charges this transaction)."),
        click.option("--nonce", type=u64(), default=None,
                     help="Nonce (default: the account's next nonce)."),
        click.option("--no-wait", is_flag=True, help="Return after the mempool accepts it; do not wait for the block."),
        click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=30.0, show_default=True,
                     help="Seconds to wait for the block."),
        json_option,
    ]):
        fn = decorator(fn)
    return fn


# ------------------------------------------------------------------------------------------------ keys


def keyring_path(keyring: Path) -> Path:
    return Path(os.path.expanduser(keyring))


def key_file_for(name_or_path: str, keyring: Path) -> Path:
    """A keyring name (`alice`) or a path (`./alice.json`, `/x/validator_key.json`)."""
    candidate = Path(os.path.expanduser(name_or_path))
    if os.sep in name_or_path or name_or_path.endswith(".json") or candidate.exists():
        return candidate
    validate_key_name(name_or_path)
    return keyring_path(keyring) / f"{name_or_path}.json"


def validate_key_name(name: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise CliError(f"invalid key name {name!r}: use letters, digits, '-', '_' and '.' (at most 64)")


def read_passphrase(prompt: str, *, confirm: bool = False) -> str:
    """From $INFERCHAIN_PASSPHRASE, else an interactive prompt; refuses to hang without a terminal."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise CliError(f"a passphrase is needed and there is no terminal: set {PASSPHRASE_ENV}")
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


def load_signing_key(name_or_path: str, keyring: Path) -> PrivateKey:
    path = key_file_for(name_or_path, keyring)
    if not path.exists():
        raise KeyFileError(f"{path}: key file not found (create it with `inferchain keys new`, "
                           "or give a path to a key file)")
    passphrase = read_passphrase(f"Passphrase for {path.name}") if is_encrypted(path) else None
    return load_key(path, passphrase)


# ------------------------------------------------------------------------------------------------ output


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def emit(doc: dict[str, Any], as_json: bool, *, shown: dict[str, str] | None = None) -> None:
    """The one way a command prints its result: `doc` as JSON for scripts (amounts in base units), else as
    `key: value` lines for people, with `shown` replacing some values by their human form (amounts in ifc)."""
    if as_json:
        echo_json(doc)
    else:
        echo_pairs([(key.replace("_", " "), (shown or {}).get(key, value)) for key, value in doc.items()])


def echo_pairs(pairs: list[tuple[str, Any]]) -> None:
    """`key: value` lines for people: yes/no for flags, `-` for nothing, and no line for an empty text."""
    shown = [(k, display(v)) for k, v in pairs if v != ""]
    width = max((len(k) for k, _ in shown), default=0)
    for key, value in shown:
        click.echo(f"{key + ':':<{width + 1}} {value}")


def display(value: Any) -> str:
    """A value as a person reads it (never Python's spelling: True, None, Height(5))."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(int(value))
    return str(value)


def tx_kind_name(kind: int) -> str:
    """`transfer`, `infer`, ... for a transaction's kind number (the number itself if this CLI does not know it)."""
    from vm.txs import TxKind

    try:
        return TxKind(kind).name.lower()
    except ValueError:
        return f"kind {int(kind)}"


def warn(message: str) -> None:
    click.secho(message, fg="yellow", err=True)
