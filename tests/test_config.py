from pathlib import Path

import pytest

from streamae.config import Config, config_to_dict, load_config
from streamae.durations import Span
from streamae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_load_without_a_file():
    assert load_config() == Config()


def test_shipped_configs_are_valid():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)


def test_default_yaml_matches_the_dataclass_defaults():
    assert config_to_dict(load_config(ROOT / "configs" / "default.yaml")) == config_to_dict(Config())


def test_default_yaml_is_generated_from_the_fields(capsys):
    from streamae.cli import main

    assert main(["config", "show"]) == 0
    assert (ROOT / "configs" / "default.yaml").read_text() == capsys.readouterr().out, (
        "configs/default.yaml differs from the fields' defaults and help: regenerate it with "
        "`streamae config show > configs/default.yaml`")


@pytest.mark.parametrize("overrides, fragment", [
    ({"window.hop": 0}, "'window.hop': got 0; must be >= 1"),
    ({"window.size": "big"}, "'window.size': got 'big'; must be an integer, or auto"),
    ({"window.size": -3}, "'window.size': got -3; must be >= 2, or auto"),
    ({"threshold.kind": "magic"}, "'threshold.kind': got 'magic'; allowed: tail, spot, quantile"),
    ({"model.kind": "gru"}, "'model.kind': got 'gru'; allowed: lstm, transformer, linear, ensemble"),
    ({"alarm.resolve_after": "soon"}, "'alarm.resolve_after'"),
    ({"window.wat": 1}, "unknown config field(s) 'wat' in 'window'"),
    ({"window.hop": 100}, "'window.hop': got 100; must be <= window.size"),
    ({"model.kind": "transformer", "model.heads": 5}, "must divide model.d_model"),
    ({"daemon.delivery": "exactly-once", "daemon.commit_every": "45s"},
     "'daemon.commit_every': got 45 s; with daemon.commit_timeout (30 s) it must stay under "
     "the producer's transaction timeout (60 s)"),
])
def test_bad_values_name_field_value_and_fix(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert fragment in str(err.value)


def test_a_bad_value_names_the_override_or_the_file_it_came_from(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("window:\n  size: 64\n")
    bad.write_text("window:\n  size: -2\n")
    with pytest.raises(ConfigError) as err:  # the file is fine: the override is named
        load_config(good, {"window.size": -3, "window.hop": 4})
    assert str(err.value).startswith(f"override window.size=-3 (on {good}): config field "
                                     "'window.size': got -3")
    with pytest.raises(ConfigError) as err:  # the file's own value: the file is named
        load_config(bad, {"window.hop": 4})
    assert str(err.value).startswith(f"{bad}: config field 'window.size': got -2")


def test_durations_accept_units(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("alarm:\n  resolve_after: 5m\n  suppress: 1h\nwindow:\n  max_gap: 90s\n")
    config = load_config(path)
    assert (config.alarm.resolve_after, config.alarm.suppress, config.window.max_gap) == (
        Span(300), Span(3600), 90)
    path.write_text("alarm:\n  resolve_after: 12 points\n")
    assert load_config(path).alarm.resolve_after == Span(12, points=True)


def test_numbers_in_exponent_form_without_a_dot(tmp_path):
    # YAML 1.1 reads 1e-3 as text; a learning rate written that way must still work
    path = tmp_path / "c.yaml"
    path.write_text("updater:\n  finetune:\n    lr: 1e-3\ntrain:\n  lr: 5E-4\n")
    config = load_config(path)
    assert (config.updater.finetune.lr, config.train.lr) == (1e-3, 5e-4)
    with pytest.raises(ConfigError, match="'train.lr': got '1e-3x'; must be a number"):
        load_config(overrides={"train.lr": "1e-3x"})


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("window: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_config_show_prints_every_field_with_its_meaning_and_loads_back(tmp_path, capsys):
    import yaml

    from streamae.cli import main
    from streamae.config import config_to_dict, load_config

    assert main(["config", "show"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    fields = [i for i, line in enumerate(lines) if line.startswith("  ") and
              not line.lstrip().startswith("#") and ":" in line]
    assert fields and all(lines[i - 1].lstrip().startswith("#") for i in fields)
    shown = tmp_path / "shown.yaml"
    shown.write_text(text)
    assert config_to_dict(load_config(shown)) == config_to_dict(load_config())
    assert yaml.safe_load(text).keys() == config_to_dict(load_config()).keys()


def test_every_field_of_the_default_config_file_has_a_comment():
    from pathlib import Path

    lines = (Path(__file__).parents[1] / "configs/default.yaml").read_text().splitlines()
    bare = [line for n, line in enumerate(lines)
            if line.startswith("  ") and not line.startswith("   ") and ":" in line
            and "#" not in line and not lines[n - 1].lstrip().startswith("#")]
    assert not bare, bare


def _schema_validator():
    import jsonschema

    from streamae.config import config_schema

    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_config_schema_accepts_every_shipped_config_file():
    import yaml

    validator = _schema_validator()
    files = sorted((ROOT / "configs").glob("*.yaml")) + [ROOT / "deploy" / "streamae.yaml"]
    for path in files:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors)
    assert validator.is_valid(config_to_dict(Config()))


@pytest.mark.parametrize("data, field", [
    ({"window": {"wat": 1}}, "window"),
    ({"window": {"size": "big"}}, "size"),
    ({"window": {"hop": 0}}, "hop"),
    ({"threshold": {"kind": "magic"}}, "kind"),
    ({"model": {"kind": "lstm", "members": []}}, "model"),
    ({"model": {"members": [{"hidden": 8}]}}, "members"),
    ({"alarm": {"resolve_after": "soon"}}, "resolve_after"),
    ({"train": {"lr": "fast"}}, "lr"),
    ({"updater": {"gate": {"tolerance": "loose"}}}, "tolerance"),
])
def test_config_schema_and_loader_both_refuse_a_bad_config(data, field):
    from streamae.config import config_from_dict

    errors = list(_schema_validator().iter_errors(data))
    assert errors
    found = [e for top in errors for e in (top, *top.context)]
    assert any(field in [*map(str, e.absolute_path), e.message] or field in e.message
               for e in found)
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert field in str(err.value)


@pytest.mark.parametrize("data, now", [
    ({"updater": {"lr": 1e-3}}, "'updater.lr' is now 'updater.finetune.lr'"),
    ({"updater": {"gate_tolerance": 0.1, "admit_after": "2h"}},
     "'updater.admit_after' is now 'updater.relearn.admit_after'; 'updater.gate_tolerance' "
     "is now 'updater.gate.tolerance'"),
    ({"updater": {"buffer": "per-key"}}, "'updater.buffer' is now 'updater.buffer.scope'"),
])
def test_a_flat_updater_field_of_earlier_versions_says_where_it_lives_now(data, now):
    from streamae.config import config_from_dict

    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert now in str(err.value) and "config show" in str(err.value)


def test_with_overrides_sets_nested_and_list_fields_and_validates():
    from streamae.config import load_config, with_overrides

    base = load_config()
    changed = with_overrides(base, {"updater.finetune.lr": 0.5, "model.members.0.hidden": 8})
    assert changed.updater.finetune.lr == 0.5 and changed.model.members[0].hidden == 8
    assert base.updater.finetune.lr == 1e-4  # the given config is left as it was
    with pytest.raises(ConfigError, match="updater.gate.tolerance"):
        with_overrides(base, {"updater.gate.tolerance": -5})


def test_config_schema_command_prints_the_schema(capsys):
    import json

    from streamae.cli import main

    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["threshold"]["properties"]["risk"]["default"] == 1e-4
    assert schema["additionalProperties"] is False


def test_a_section_changed_in_code_is_validated_too():
    """dataclasses.replace on a section validates as loading a file does (pydantic)."""
    import dataclasses

    from pydantic import ValidationError

    config = load_config()
    assert dataclasses.replace(config.window, hop=4).hop == 4
    with pytest.raises(ValidationError):
        dataclasses.replace(config.window, hop=0)
    with pytest.raises(ValidationError):
        dataclasses.replace(config.threshold, kind="magic")
