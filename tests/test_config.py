"""The admin-facing config layer: the example loads, defaults hold, every mistake is one clear line."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from controller.acd.setup import (
    Acceptance,
    AcdSetup,
    AgentConfig,
    AgentStartState,
    DialplanTarget,
    HoldMode,
    Membership,
    QueueConfig,
    Strategy,
)
from controller.config import ConfigError, Settings, load_settings, load_setup, redact_url, setup_warnings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "acd.toml"

MINIMAL = """
[queues.support]

[agents.alice]
endpoint = "PJSIP/agent1"
queues = ["support"]
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests must not see the developer's ACD_* variables or .env file."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("ACD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "acd.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_for(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_setup(path)
    assert str(info.value) == "\n".join(info.value.problems)
    for line in info.value.problems:
        assert line.startswith(f"{path}: "), line
    return info.value.problems


def one_problem(tmp_path: Path, text: str) -> str:
    problems = problems_for(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


# --------------------------------------------------------------------------- happy paths


def test_example_file_loads() -> None:
    setup = load_setup(EXAMPLE)
    assert isinstance(setup, AcdSetup)
    assert list(setup.queues) == ["support", "sales"]
    assert list(setup.agents) == ["alice", "bob", "carol", "dave"]  # file order (linear uses it)

    support, sales = setup.queues["support"], setup.queues["sales"]
    assert support.strategy is Strategy.LONGEST_IDLE
    assert support.acceptance is Acceptance.ANSWER
    assert support.hold is HoldMode.MOH
    assert support.overflow is None
    assert sales.acceptance is Acceptance.CONFIRM
    assert sales.hold is HoldMode.RING
    assert sales.max_wait == 120
    assert sales.overflow == DialplanTarget("acd-overflow", "s", 1)
    assert sales.strategy in (Strategy.RING_ALL, Strategy.ROUND_ROBIN)

    assert [a.endpoint for a in setup.agents.values()] == [f"PJSIP/agent{i}" for i in range(1, 5)]
    carol = setup.agents["carol"]
    assert carol.name == "Carol"
    assert Membership("support", 1) in carol.queues
    assert setup.agents["dave"].state is AgentStartState.LOGGED_OUT


def test_example_comments_every_queue_and_agent_field() -> None:
    text = EXAMPLE.read_text()
    for field in dataclasses.fields(QueueConfig):
        if field.name in ("name", "dial_backstop"):
            continue  # the table key / an engine-internal knob
        assert f"\n{field.name} = " in text, field.name
    for key in ("name", "endpoint", "queues", "state", "penalty"):
        assert key in text


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    setup = load_setup(write(tmp_path, MINIMAL))
    queue = setup.queues["support"]
    defaults = QueueConfig(name="support")
    assert queue == defaults
    # and the documented values, so a silent engine default change is noticed here
    assert queue.strategy is Strategy.LONGEST_IDLE
    assert queue.ring_timeout == 15
    assert queue.acceptance is Acceptance.ANSWER
    assert queue.hold is HoldMode.MOH
    assert queue.wrapup == 5
    assert queue.max_wait == 0
    assert queue.overflow is None
    assert (queue.reject_delay, queue.busy_delay, queue.no_answer_delay, queue.unreachable_delay) == (
        0,
        10,
        0,
        5,
    )
    assert queue.max_no_answer == 2
    assert queue.join_empty is True

    agent = setup.agents["alice"]
    assert agent == AgentConfig(
        id="alice",
        name="alice",  # name defaults to the id
        endpoint="PJSIP/agent1",
        queues=(Membership("support", 0),),
        state=AgentStartState.AVAILABLE,
    )


def test_every_field_set(tmp_path: Path) -> None:
    setup = load_setup(
        write(
            tmp_path,
            """
            [queues.q1]
            strategy = "fewest_calls"
            ring_timeout = 2.5
            acceptance = "confirm"
            hold = "ring"
            wrapup = 0
            max_wait = 30
            overflow = "ctx, 100 ,2"
            reject_delay = 1
            busy_delay = 2
            no_answer_delay = 3
            unreachable_delay = 4
            max_no_answer = 0
            join_empty = false
            retry = 0
            confirm_timeout = 7
            invite_headers = ["caller", "queue", "caller"]

            [agents.a1]
            name = "Agent One"
            endpoint = "SIP/100"
            queues = []
            state = "logged_out"
            """,
        )
    )
    q = setup.queues["q1"]
    assert q == QueueConfig(
        name="q1",
        strategy=Strategy.FEWEST_CALLS,
        ring_timeout=2.5,
        acceptance=Acceptance.CONFIRM,
        hold=HoldMode.RING,
        wrapup=0,
        max_wait=30,
        overflow=DialplanTarget("ctx", "100", 2),
        reject_delay=1,
        busy_delay=2,
        no_answer_delay=3,
        unreachable_delay=4,
        max_no_answer=0,
        join_empty=False,
        retry=0,
        confirm_timeout=7,
        invite_headers=("caller", "queue"),  # in the order given, once each
    )
    assert setup.agents["a1"].queues == ()
    assert setup.agents["a1"].name == "Agent One"


@pytest.mark.parametrize("strategy", [s.value for s in Strategy])
def test_every_strategy_accepted(tmp_path: Path, strategy: str) -> None:
    setup = load_setup(write(tmp_path, f'[queues.q]\nstrategy = "{strategy}"\n'))
    assert setup.queues["q"].strategy == Strategy(strategy)


def test_penalty_tables_and_names_mix(tmp_path: Path) -> None:
    setup = load_setup(
        write(
            tmp_path,
            """
            [queues.a]
            [queues.b]
            [queues.c]
            [agents.x]
            endpoint = "PJSIP/x"
            queues = ["a", { queue = "b", penalty = 3 }, { queue = "c" }]
            """,
        )
    )
    assert setup.agents["x"].queues == (Membership("a", 0), Membership("b", 3), Membership("c", 0))


def test_empty_overflow_means_hang_up(tmp_path: Path) -> None:
    setup = load_setup(write(tmp_path, '[queues.q]\nmax_wait = 10\noverflow = ""\n'))
    assert setup.queues["q"].overflow is None


def test_overflow_without_priority_defaults_to_1(tmp_path: Path) -> None:
    setup = load_setup(write(tmp_path, '[queues.q]\nmax_wait = 10\noverflow = "ctx,s"\n'))
    assert setup.queues["q"].overflow == DialplanTarget("ctx", "s", 1)


def test_agent_order_is_file_order(tmp_path: Path) -> None:
    names = ["zed", "amy", "mo", "bea"]
    body = "[queues.q]\n" + "".join(f'[agents.{n}]\nendpoint = "PJSIP/{n}"\nqueues = ["q"]\n' for n in names)
    assert list(load_setup(write(tmp_path, body)).agents) == names


def test_warnings_for_unstaffed_queue_and_useless_overflow(tmp_path: Path) -> None:
    setup = load_setup(
        write(
            tmp_path,
            """
            [queues.lonely]
            overflow = "ctx,s,1"
            [queues.ok]
            [agents.a]
            endpoint = "PJSIP/a"
            queues = ["ok"]
            [agents.b]
            endpoint = "PJSIP/b"
            """,
        )
    )
    warnings = setup_warnings(setup)
    assert any(w.startswith("queues.lonely:") for w in warnings)
    assert any(w.startswith("queues.lonely.overflow:") and "max_wait" in w for w in warnings)
    assert any(w.startswith("agents.b.queues:") for w in warnings)
    assert not setup_warnings(load_setup(EXAMPLE))


# --------------------------------------------------------------------------- one clear line per mistake


def test_unknown_queue_key_suggests_the_right_one(tmp_path: Path) -> None:
    msg = one_problem(tmp_path, "[queues.support]\nring_timout = 5\n")
    assert "queues.support.ring_timout: unknown key" in msg
    assert 'did you mean "ring_timeout"' in msg


def test_unknown_agent_key(tmp_path: Path) -> None:
    msg = one_problem(tmp_path, '[queues.q]\n[agents.a]\nendpoint = "PJSIP/a"\nextension = "100"\n')
    assert "agents.a.extension: unknown key" in msg
    assert "endpoint" in msg  # lists what is allowed


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg = one_problem(tmp_path, "[queue.support]\n[queues.q]\n")
    assert "queue: unknown key" in msg and 'did you mean "queues"' in msg


def test_unknown_membership_key(tmp_path: Path) -> None:
    msg = one_problem(
        tmp_path, '[queues.q]\n[agents.a]\nendpoint = "PJSIP/a"\nqueues = [{ queue = "q", penality = 1 }]\n'
    )
    assert "agents.a.queues[0].penality: unknown key" in msg
    assert 'did you mean "penalty"' in msg


def test_negative_ring_timeout_message_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, "[queues.support]\nring_timeout = -3\n")
    with pytest.raises(ConfigError) as info:
        load_setup(path)
    assert str(info.value) == f"{path}: queues.support.ring_timeout: must be a number of seconds > 0, got -3"


@pytest.mark.parametrize(
    ("line", "key", "expect", "got"),
    [
        ("ring_timeout = 0", "ring_timeout", "a number of seconds > 0", "got 0"),
        ('ring_timeout = "15"', "ring_timeout", "a number of seconds > 0", 'got "15"'),
        ("ring_timeout = inf", "ring_timeout", "a number of seconds > 0", "got inf"),
        ("wrapup = -1", "wrapup", "a number of seconds >= 0", "got -1"),
        ("busy_delay = -0.5", "busy_delay", "a number of seconds >= 0", "got -0.5"),
        ("reject_delay = true", "reject_delay", "a number of seconds >= 0", "got true"),
        ("no_answer_delay = -1", "no_answer_delay", ">= 0", "got -1"),
        ("unreachable_delay = -1", "unreachable_delay", ">= 0", "got -1"),
        ("max_wait = -10", "max_wait", ">= 0", "got -10"),
        ("retry = -1", "retry", ">= 0", "got -1"),
        ("max_no_answer = 2.5", "max_no_answer", "a whole number >= 0", "got 2.5"),
        ("max_no_answer = -1", "max_no_answer", "a whole number >= 0", "got -1"),
        ('join_empty = "yes"', "join_empty", "true or false", 'got "yes"'),
        ("join_empty = 1", "join_empty", "true or false", "got 1"),
        ('strategy = "fastest"', "strategy", '"longest_idle", "round_robin"', 'got "fastest"'),
        ('acceptance = "auto"', "acceptance", '"answer", "confirm", "desktop"', 'got "auto"'),
        ('hold = "silence"', "hold", '"moh", "ring"', 'got "silence"'),
        ("strategy = 3", "strategy", "one of", "got 3"),
        ('overflow = "acd-overflow"', "overflow", '"context,exten[,priority]"', 'got "acd-overflow"'),
        ('overflow = "ctx,s,x"', "overflow", '"context,exten[,priority]"', "priority must be a whole number"),
        ('overflow = "ctx,s,0"', "overflow", '"context,exten[,priority]"', "priority must be >= 1"),
        ('overflow = ",s,1"', "overflow", '"context,exten[,priority]"', 'got ",s,1"'),
        ("overflow = 5", "overflow", '"context,exten[,priority]"', "got 5"),
    ],
)
def test_bad_queue_values(tmp_path: Path, line: str, key: str, expect: str, got: str) -> None:
    msg = one_problem(tmp_path, f"[queues.support]\n{line}\n")
    assert f"queues.support.{key}: must be " in msg
    assert expect in msg
    assert got in msg


PENALTY = "agents.a.queues[0].penalty"


@pytest.mark.parametrize(
    ("body", "key", "expect"),
    [
        ('endpoint = "agent1"', "agents.a.endpoint", '"TECH/resource"'),
        ('endpoint = "PJSIP/"', "agents.a.endpoint", '"TECH/resource"'),
        ('endpoint = "PJSIP/agent 1"', "agents.a.endpoint", '"TECH/resource"'),
        ("endpoint = 1", "agents.a.endpoint", '"TECH/resource"'),
        ('name = "x"', "agents.a.endpoint", "missing"),
        ('endpoint = "PJSIP/a"\nname = ""', "agents.a.name", "non-empty"),
        ('endpoint = "PJSIP/a"\nstate = "away"', "agents.a.state", '"available", "logged_out"'),
        ('endpoint = "PJSIP/a"\nqueues = "q"', "agents.a.queues", "a list of queue names"),
        ('endpoint = "PJSIP/a"\nqueues = [3]', "agents.a.queues[0]", "a queue name or"),
        (
            'endpoint = "PJSIP/a"\nqueues = [{ queue = "q", penalty = -1 }]',
            "agents.a.queues[0].penalty",
            ">= 0",
        ),
        (
            'endpoint = "PJSIP/a"\nqueues = [{ queue = "q", penalty = 1.5 }]',
            "agents.a.queues[0].penalty",
            ">= 0",
        ),
        ('endpoint = "PJSIP/a"\nqueues = [{ penalty = 1 }]', "agents.a.queues[0].queue", "missing"),
    ],
)
def test_bad_agent_values(tmp_path: Path, body: str, key: str, expect: str) -> None:
    msg = one_problem(tmp_path, f"[queues.q]\n[agents.a]\n{body}\n")
    assert f"{key}: " in msg
    assert expect in msg


def test_agent_references_unknown_queue(tmp_path: Path) -> None:
    msg = one_problem(
        tmp_path, '[queues.support]\n[queues.sales]\n[agents.a]\nendpoint = "PJSIP/a"\nqueues = ["suport"]\n'
    )
    assert 'agents.a.queues[0]: unknown queue "suport"' in msg
    assert 'did you mean "support"' in msg
    assert "support, sales" in msg


def test_agent_lists_a_queue_twice(tmp_path: Path) -> None:
    msg = one_problem(
        tmp_path, '[queues.q]\n[agents.a]\nendpoint = "PJSIP/a"\nqueues = ["q", { queue = "q" }]\n'
    )
    assert "agents.a.queues[1]" in msg and "twice" in msg


def test_duplicate_endpoint(tmp_path: Path) -> None:
    msg = one_problem(
        tmp_path,
        """
        [queues.q]
        [agents.alice]
        endpoint = "PJSIP/agent1"
        [agents.bob]
        endpoint = "pjsip/agent1"
        """,
    )
    assert "agents.bob.endpoint:" in msg
    assert "already used by agent alice" in msg


def test_at_least_one_queue(tmp_path: Path) -> None:
    msg = one_problem(tmp_path, '[agents.a]\nendpoint = "PJSIP/a"\n')
    assert "queues: at least one queue is required" in msg


def test_empty_file(tmp_path: Path) -> None:
    assert "at least one queue" in one_problem(tmp_path, "")


def test_queue_that_is_not_a_table(tmp_path: Path) -> None:
    msg = one_problem(tmp_path, "[queues]\nsupport = 5\nsales = {}\n")
    assert "queues.support: must be a table" in msg


def test_bad_names(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, '[queues."my queue"]\n[agents."bad/id"]\nendpoint = "PJSIP/a"\n')
    assert any('queues."my queue": queue name must be' in p for p in problems)
    assert any('agents."bad/id": agent id must be' in p for p in problems)


def test_several_problems_are_all_reported_in_file_order(tmp_path: Path) -> None:
    problems = problems_for(
        tmp_path,
        """
        [queues.support]
        ring_timeout = -3
        [queues.sales]
        hold = "silence"
        [agents.a]
        endpoint = "nope"
        """,
    )
    assert len(problems) == 3
    assert "queues.support.ring_timeout" in problems[0]
    assert "queues.sales.hold" in problems[1]
    assert "agents.a.endpoint" in problems[2]


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[queues.support]\nring_timeout = 15\nstrategy = "linear\n')
    with pytest.raises(ConfigError) as info:
        load_setup(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: line 3, column ")
    assert "TOML syntax error" in msg


def test_toml_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[queues.support]\nwrapup = 1\nwrapup = 2\n")
    with pytest.raises(ConfigError, match=r"line 3, column \d+: TOML syntax error"):
        load_setup(path)


def test_missing_file_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_setup(tmp_path / "nope.toml")
    msg = str(info.value)
    assert str(tmp_path / "nope.toml") in msg
    assert "not found" in msg
    assert "--config" in msg and "ACD_CONFIG" in msg


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_setup(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "acd.toml"
    path.write_bytes(b"[queues.q]\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_setup(path)


# --------------------------------------------------------------------------- settings


def test_settings_defaults() -> None:
    s = load_settings(env_file=None)
    assert s.ari_url == "http://127.0.0.1:8088"
    assert s.ari_user == "acd"
    assert s.ari_password.get_secret_value() == ""
    assert s.ari_app == "acd"
    assert s.config == Path("acd.toml")
    assert s.database_url == "sqlite+aiosqlite:///./data/acd.sqlite3"
    assert s.http_host == "127.0.0.1"
    assert s.http_port == 8080
    assert s.log_level == "INFO"
    assert s.log_format == "text"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_HTTP_PORT", "9090")
    monkeypatch.setenv("ACD_ARI_URL", "https://pbx.example:8089/")
    monkeypatch.setenv("ACD_ARI_PASSWORD", "s3cret!")
    monkeypatch.setenv("ACD_CONFIG", "/etc/acd/queues.toml")
    monkeypatch.setenv("ACD_LOG_LEVEL", "debug")
    monkeypatch.setenv("ACD_LOG_FORMAT", "JSON")
    s = load_settings(env_file=None)
    assert s.http_port == 9090
    assert s.ari_url == "https://pbx.example:8089"
    assert s.ari_password.get_secret_value() == "s3cret!"
    assert s.config == Path("/etc/acd/queues.toml")
    assert s.log_level == "DEBUG"
    assert s.log_format == "json"


def test_dotenv_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("ACD_HTTP_PORT=7000\nACD_ARI_APP=callcenter\nOTHER_TOOL=1\n")
    monkeypatch.setenv("ACD_ARI_APP", "fromenv")
    s = load_settings()  # .env in the current directory (tmp_path)
    assert s.http_port == 7000
    assert s.ari_app == "fromenv"


def test_typo_in_dotenv_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ACD_HTTP_PROT=7000\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert ".env: ACD_HTTP_PROT: unknown setting (did you mean ACD_HTTP_PORT?)" in str(info.value)
    assert "ACD_HTTP_PORT" in str(info.value)


def test_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_CONFIG", "from-env.toml")
    assert load_settings(env_file=None, config=Path("cli.toml")).config == Path("cli.toml")
    assert load_settings(env_file=None, config=None).config == Path("from-env.toml")


@pytest.mark.parametrize(
    ("var", "value", "expect"),
    [
        ("ACD_HTTP_PORT", "abc", "ACD_HTTP_PORT: must be a TCP port number 1-65535, got 'abc'"),
        ("ACD_HTTP_PORT", "70000", "ACD_HTTP_PORT: must be a TCP port number 1-65535, got '70000'"),
        ("ACD_LOG_FORMAT", "xml", "ACD_LOG_FORMAT: must be text or json, got 'xml'"),
        ("ACD_LOG_LEVEL", "LOUD", "ACD_LOG_LEVEL: must be one of DEBUG, INFO"),
        ("ACD_ARI_URL", "127.0.0.1:8088", "ACD_ARI_URL: must be an http:// or https:// URL"),
        ("ACD_ARI_USER", " ", "ACD_ARI_USER: must be a non-empty"),
        ("ACD_DATABASE_URL", "data.db", "ACD_DATABASE_URL: must be sqlite+aiosqlite:///PATH"),
    ],
)
def test_invalid_env_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expect: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None)
    assert len(info.value.problems) == 1
    assert expect in str(info.value)
    assert "pydantic" not in str(info.value).lower()


def test_password_never_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_ARI_PASSWORD", "hunter22")
    monkeypatch.setenv("ACD_DATABASE_URL", "postgresql+asyncpg://acd:dbpass99@db/acd")
    s = load_settings(env_file=None)
    for text in (repr(s), str(s), f"{s}", str(s.model_dump())):
        assert "hunter22" not in text
    for text in (repr(s), str(s)):
        assert "dbpass99" not in text
    assert s.ari_password.get_secret_value() == "hunter22"
    assert s.database_url.endswith("acd:dbpass99@db/acd")  # the real value still works
    assert sorted(s.secret_values()) == ["dbpass99", "hunter22"]


def test_password_given_as_override_is_hidden_too() -> None:
    s = load_settings(env_file=None, ari_password="topsecret")
    assert "topsecret" not in repr(s)


def test_require_ari_password() -> None:
    with pytest.raises(ConfigError, match="ACD_ARI_PASSWORD: must be set"):
        load_settings(env_file=None).require_ari_password()
    assert load_settings(env_file=None, ari_password="x").require_ari_password() == "x"


def test_redact_url() -> None:
    assert redact_url("postgresql://u:p@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("sqlite+aiosqlite:///./data/acd.sqlite3") == "sqlite+aiosqlite:///./data/acd.sqlite3"


def test_settings_is_the_pydantic_settings_class() -> None:
    assert Settings.model_config["env_prefix"] == "ACD_"


# --------------------------------------------------------------------------- docs stay in step


def test_readme_documents_every_setting_and_field() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`ACD_{name.upper()}`" in readme, name
    for field in dataclasses.fields(QueueConfig):
        if field.name not in ("name", "dial_backstop"):
            assert f"| `{field.name}` |" in readme, field.name
    for field in ("name", "endpoint", "queues", "state"):
        assert f"| `{field}` |" in readme, field


def test_readme_fresh_machine_block_is_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines() == ["make demo", "make test"]


# --------------------------------------------------------------------------- bad input (issue 13)


def test_ari_url_with_credentials_says_where_they_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACD_ARI_URL", "http://user:pw-secret@host:8088")
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None)
    text = str(info.value)
    assert "ACD_ARI_URL: must be an http:// or https:// URL" in text
    assert "set ACD_ARI_USER and ACD_ARI_PASSWORD instead" in text
    assert "pw-secret" not in text and "http://user:***@host:8088" in text


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://acd:pw@db/acd", "postgresql+asyncpg://acd:pw@db/acd"),
        ("postgres://acd:pw@db:5432/acd", "postgresql+asyncpg://acd:pw@db:5432/acd"),
        ("sqlite+aiosqlite:///./data/acd.sqlite3", "sqlite+aiosqlite:///./data/acd.sqlite3"),
    ],
)
def test_database_urls_without_an_async_driver_are_mapped_to_one(given: str, used: str) -> None:
    assert load_settings(env_file=None, database_url=given).database_url == used


@pytest.mark.parametrize(
    "given", ["mysql://u:pw-secret@h/db", "postgresql+psycopg2://u:pw-secret@h/db", "sqlite+pysqlite:///x.db"]
)
def test_database_urls_with_a_driver_we_cannot_use_are_refused_by_check_config(given: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None, database_url=given)
    text = str(info.value)
    assert "ACD_DATABASE_URL: must be sqlite+aiosqlite:///PATH" in text and "postgresql+asyncpg://" in text
    assert "pw-secret" not in text


def test_two_agents_with_the_same_token_are_refused_naming_both(tmp_path: Path) -> None:
    digest = "ab" * 32
    path = tmp_path / "acd.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [queues.support]
            [agents.alice]
            endpoint = "PJSIP/a"
            token_sha256 = "{digest}"
            [agents.bob]
            endpoint = "PJSIP/b"
            token_sha256 = "{digest.upper()}"
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        load_setup(path)
    assert str(info.value) == (
        f"{path}: agents.bob.token_sha256: the same token as agent alice; give each agent its own token"
    )


def test_short_secrets_are_named() -> None:
    s = load_settings(
        env_file=None,
        ari_password="secret",
        admin_token="a-long-enough-token",
        wa_app_secret="x",
        database_url="postgresql+asyncpg://acd:pw@db/acd",
    )
    assert s.short_secrets() == ["ACD_ARI_PASSWORD", "ACD_WA_APP_SECRET", "ACD_DATABASE_URL (its password)"]


def test_service_level_target_is_a_percentage(monkeypatch) -> None:
    monkeypatch.setenv("ACD_SERVICE_LEVEL_TARGET", "95")
    assert load_settings().service_level_target == 95
    monkeypatch.setenv("ACD_SERVICE_LEVEL_TARGET", "150")
    with pytest.raises(ConfigError, match="ACD_SERVICE_LEVEL_TARGET"):
        load_settings()


@pytest.mark.parametrize("value", ['["queue", "bogus"]', '"queue"', "[1]"])
def test_invite_headers_must_be_known_names(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"invite_headers: must be a list of X-Acd-\* headers"):
        text = MINIMAL.replace("[queues.support]", f"[queues.support]\ninvite_headers = {value}")
        load_setup(write(tmp_path, text))
