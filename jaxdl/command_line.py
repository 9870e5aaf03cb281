"""A misspelt key or group option on the command line gets jaxdl's one line, before Hydra
composes the config:

    model.hiden=32  ->  [jaxdl] config error: model.hiden: is not a setting of model 'lstm'
                        (did you mean model.hidden?); it takes [...]        (exit 2)
    model=lsmt      ->  [jaxdl] config error: model=lsmt: there is no model 'lsmt'
                        (did you mean model=lstm?); the options: [...]

Hydra refuses a key that is not in the composed config with a message of six lines that
advises `+key=...`, which jaxdl then refuses in turn (jaxdl.configure). Here the command
line's group choices are composed first; a key (written without +, ++ or ~) that is not
in that config is worded exactly as configure.parse words the same key given with `+`,
and a group option that does not exist gets the closest one (difflib). Anything else, and
everything under HYDRA_FULL_ERROR=1, is left to Hydra, so its own error still shows.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from jaxdl.config.fields import ConfigError, did_you_mean

CONF = Path(__file__).resolve().parents[1] / "conf"
OTHER_CONFIG = ("-cp", "-cn", "-cd", "--config-path", "--config-name", "--config-dir")


def _present(cfg, key: str) -> bool:
    """Whether the dotted key names a node of the composed config (a list index counts)."""
    from omegaconf import DictConfig, ListConfig
    node = cfg
    for part in key.split("."):
        if isinstance(node, ListConfig):
            return part.isdigit()
        if not isinstance(node, DictConfig) or part not in list(node.keys()):
            return False
        node = node._get_node(part)
    return True


def _dotted(cfg, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (inner nodes and leaves)."""
    from omegaconf import DictConfig
    out = []
    for k in cfg.keys():
        key = f"{prefix}{k}"
        out.append(key)
        node = cfg._get_node(k)
        if isinstance(node, DictConfig):
            out += _dotted(node, key + ".")
    return out


def _unknown_key(cfg, groups: list[str], o) -> str:
    """The line for key `o` (an override not in the composed config): configure.parse's own
    words for the same key given with `+` (the schema's settings and the closest one), else
    the closest key of the composed config."""
    from hydra import compose
    from omegaconf import OmegaConf

    from jaxdl.configure import parse
    key = o.key_or_group
    value = next(iter(o.sweep_string_iterator())) if o.is_sweep_override() else o.get_value_element_as_str()
    try:
        plus = compose("config", overrides=groups + [f"+{key}={value}"])
        OmegaConf.set_struct(plus, False)
        plus.pop("hydra", None)
        parse(plus, [f"{key}={value}"])
    except ConfigError as err:
        if str(err).startswith(key):
            return str(err)
    except Exception:      # noqa: BLE001 - any other failure: the plain line below
        pass
    parent = key.rpartition(".")[0]
    keys = [k for k in _dotted(cfg) if not k.startswith("hydra")]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    leaf = key.rpartition(".")[2]
    hint = did_you_mean(leaf, [k.rpartition(".")[2] for k in siblings], f"{parent}." if parent else "")
    hint = hint or did_you_mean(key, keys)
    where = f"{parent} takes {[k.rpartition('.')[2] for k in siblings]}" if parent else f"known keys: {siblings}"
    return f"{key}: is not a setting{hint}; {where}"


def check_command_line(argv: list[str]) -> str | None:
    """The config error line for the first misspelt key or unknown group option among the
    command line's overrides (argv without the program name), or None: all known, or a
    case left to Hydra (HYDRA_FULL_ERROR=1, another config given with -cp/-cn/-cd, an
    override Hydra cannot parse, a composition that fails for another reason)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1" or any(a.split("=")[0] in OTHER_CONFIG for a in argv):
        return None
    args = [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    if not args:
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:      # noqa: BLE001 - Hydra words its own syntax errors
        return None
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups, plain = [], []
        for o in overrides:
            if o.key_or_group.split(".")[0].split("/")[0] == "hydra":
                continue
            options = loader.get_group_options(o.key_or_group)
            if options:
                values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
                for v in values:
                    if not o.is_delete() and v not in options and v != "null":
                        close = difflib.get_close_matches(v, options, n=1, cutoff=0.6)
                        hint = f" (did you mean {o.key_or_group}={close[0]}?)" if close else ""
                        return (f"{o.key_or_group}={v}: there is no {o.key_or_group} {v!r}{hint}; "
                                f"the options: {options}")
                groups.append(f"{o.get_key_element()}={values[0]}" if not o.is_delete() else o.input_line)
            elif not (o.is_add() or o.is_force_add() or o.is_delete()):
                plain.append(o)
        if not plain:
            return None
        try:
            cfg = compose("config", overrides=groups)
        except Exception:      # noqa: BLE001 - Hydra explains a composition that fails otherwise
            return None
        for o in plain:
            if not _present(cfg, o.key_or_group):
                return _unknown_key(cfg, groups, o)
    return None
