"""Approved templates for the composer: the file is checked at start, the API lists them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controller.cli import main
from controller.config import ConfigError, load_settings
from controller.whatsapp.service import WhatsAppConfig
from controller.whatsapp.templates import check_templates, load_templates
from tests.whatsapp.conftest import ADMIN, TOKENS

UPDATE = {
    "name": "atualizacao_pedido",
    "language": "pt_BR",
    "category": "utility",
    "body": "Olá! Seu pedido {{1}} foi atualizado.",
}
PROMO = {
    "name": "promo_semana",
    "language": "pt_BR",
    "category": "MARKETING",
    "body": "{{1}}, esta semana: {{2}}% de desconto. {{1}}, aproveite!",
    "params": 2,
}
TOML = """
[[templates]]
name = "atualizacao_pedido"
language = "pt_BR"
category = "UTILITY"
body = "Olá! Seu pedido {{1}} foi atualizado."

[[templates]]
name = "boas_vindas"
language = "en_US"
category = "marketing"
body = "Welcome!"
"""


async def test_api_lists_templates_to_any_token(make_sidecar) -> None:
    s = await make_sidecar(templates=[UPDATE, PROMO])
    for token in (TOKENS["carol"], ADMIN):  # carol is not even in the team
        status, data = await s.api("GET", "/api/templates", token)
        assert status == 200
        assert data == {
            "templates": [
                {
                    "name": "atualizacao_pedido",
                    "language": "pt_BR",
                    "category": "UTILITY",
                    "body": "Olá! Seu pedido {{1}} foi atualizado.",
                    "params": 1,
                },
                {**PROMO, "params": 2},
            ]
        }
    status, data = await s.api("GET", "/api/templates", "not-a-token")
    assert status == 401 and "error" in data


async def test_no_templates_configured_is_an_empty_list(make_sidecar) -> None:
    s = await make_sidecar()
    assert await s.api("GET", "/api/templates", TOKENS["alice"]) == (200, {"templates": []})


def test_json_and_toml_files(tmp_path: Path) -> None:
    j = tmp_path / "t.json"
    j.write_text(json.dumps({"templates": [UPDATE, PROMO]}))
    assert [(t["name"], t["params"], t["category"]) for t in load_templates(j)] == [
        ("atualizacao_pedido", 1, "UTILITY"),
        ("promo_semana", 2, "MARKETING"),
    ]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([UPDATE]))
    assert load_templates(bare)[0]["name"] == "atualizacao_pedido"
    t = tmp_path / "t.toml"
    t.write_text(TOML)
    assert [(x["name"], x["language"], x["category"], x["params"]) for x in load_templates(t)] == [
        ("atualizacao_pedido", "pt_BR", "UTILITY", 1),
        ("boas_vindas", "en_US", "MARKETING", 0),
    ]


@pytest.mark.parametrize(
    ("entry", "expect"),
    [
        ({**UPDATE, "body": "Pedido {{2}}"}, "templates[1] (atualizacao_pedido): body: placeholders must be"),
        ({**UPDATE, "body": "Olá {{nome}}"}, "body: placeholder {{nome}} must be a number"),
        ({**UPDATE, "params": 2}, "params: the body has 1 placeholder(s), got params = 2"),
        ({**UPDATE, "category": "PROMO"}, "category: must be one of MARKETING, UTILITY, AUTHENTICATION"),
        ({**UPDATE, "language": "Portuguese"}, 'language: must be a language code such as "pt_BR"'),
        ({**UPDATE, "name": "Atualização"}, "name: must be the template's name as approved"),
        ({**UPDATE, "body": ""}, "body: must be the template's body text"),
        ({**UPDATE, "header": "x"}, "header: unknown key"),
        ({k: v for k, v in UPDATE.items() if k != "category"}, "category: must be one of"),
        ("promo_semana", "templates[1]: must be a table/object"),
        (dict(PROMO), "templates[1] (promo_semana): promo_semana (pt_BR) is already listed as templates[0]"),
    ],
)
def test_every_mistake_names_the_file_and_entry(tmp_path: Path, entry: object, expect: str) -> None:
    path = tmp_path / "approved.json"
    path.write_text(json.dumps({"templates": [PROMO, entry]}))
    with pytest.raises(ConfigError) as info:
        load_templates(path)
    lines = str(info.value).splitlines()
    assert any(line.startswith(f"{path}: ") and expect in line for line in lines), lines


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("missing.json", None, "templates file not found"),
        ("t.json", "{not json", "JSON syntax error"),
        ("t.toml", "[[templates]\n", "TOML syntax error"),
        ("t.yaml", "templates: []", "must end in .json or .toml"),
        ("t.json", '{"templates": {"name": "x"}}', "templates: must be a list"),
        ("t.json", '{"template": []}', "template: unknown key"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: str | None, expect: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expect) as info:
        load_templates(path)
    assert str(path) in str(info.value)


def test_config_field_is_checked_too() -> None:
    config = WhatsAppConfig(templates=[UPDATE])
    assert config.templates[0]["params"] == 1 and config.templates[0]["category"] == "UTILITY"
    with pytest.raises(ConfigError, match=r"WhatsAppConfig.templates: templates\[0\] \(x\): category"):
        WhatsAppConfig(templates=[{**UPDATE, "name": "x", "category": "?"}])
    assert check_templates([]) == []


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.upper().startswith("ACD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "acd.toml").write_text('[queues.support]\n[agents.alice]\nendpoint = "PJSIP/a1"\n')
    return tmp_path


def test_setting_loads_the_file_at_start(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import controller.whatsapp.service as service

    good = clean_env / "templates.toml"
    good.write_text(TOML)
    monkeypatch.setenv("ACD_WA_TEMPLATES_FILE", str(good))
    assert [t["name"] for t in WhatsAppConfig.from_settings(load_settings(env_file=None)).templates] == [
        "atualizacao_pedido",
        "boas_vindas",
    ]
    started: list[WhatsAppConfig] = []

    async def fake_run(config: WhatsAppConfig) -> int:
        started.append(config)
        return 0

    monkeypatch.setattr(service, "run_sidecar", fake_run)
    bad = clean_env / "bad.toml"
    bad.write_text(TOML.replace("{{1}}", "{{2}}"))
    monkeypatch.setenv("ACD_WA_TEMPLATES_FILE", str(bad))
    assert main(["sidecar"]) == 2 and not started
    err = capsys.readouterr().err
    assert f"{bad}: templates[0] (atualizacao_pedido): body: placeholders must be numbered" in err
    monkeypatch.setenv("ACD_WA_TEMPLATES_FILE", "templates.txt")
    with pytest.raises(ConfigError, match="ACD_WA_TEMPLATES_FILE: must be the path of a .json or .toml file"):
        load_settings(env_file=None)
