"""Every public name users import has a docstring: the SDK (``rock.sdk``), ``rock.make`` and the
env clients, the request/response models and errors (``rock.actions``, ``rock.errors``), and each
admin front door's ``install`` (where a newcomer starts reading a door)."""

import importlib
import inspect
import pkgutil

import pytest

SDK = ["rock.sdk"]
ENV_CLIENTS = ["rock.sdk.envs.client", "rock.sdk.envs.vec_client", "rock.sdk.envs.sandbox_env", "rock.sdk.envs.contract",
               "rock.sdk.envs.gym_http", "rock.envs.errors", "rock.numpy", "rock.client"]
# rl-rock's public module and the errors users catch; a model's docstring is also its description
# in the admin's OpenAPI schema
MODELS = ["rock.actions", "rock.errors"]
DOORS = ["rock_api", "ports", "envs", "training", "chat", "e2b", "jobs", "ui"]


def _modules(root: str):
    module = importlib.import_module(root)
    yield module
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), root + "."):
        yield importlib.import_module(info.name)


def _undocumented(module) -> list[str]:
    missing = [] if module.__doc__ else [f"{module.__name__} (the module)"]
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue  # private, or imported from elsewhere (checked where it is defined)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not obj.__doc__:
            missing.append(f"{module.__name__}.{name}")
        for attr, value in vars(obj).items() if inspect.isclass(obj) else ():
            if attr.startswith("_"):
                continue
            doc = value.__doc__ if isinstance(value, property) else getattr(getattr(value, "__func__", value), "__doc__", "")
            if inspect.isfunction(getattr(value, "__func__", value)) or isinstance(value, property):
                if not doc:
                    missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


@pytest.mark.parametrize("root", SDK + ENV_CLIENTS + MODELS)
def test_every_public_name_has_a_docstring(root):
    missing = [name for module in _modules(root) for name in _undocumented(module)]
    assert not missing, f"public names without a docstring: {', '.join(missing)}"


def test_rock_make_has_a_docstring():
    import rock

    for name in ("make", "make_vec", "make_async", "make_vec_async"):
        assert getattr(rock, name).__doc__, f"rock.{name} has no docstring"


@pytest.mark.parametrize("door", DOORS)
def test_each_front_door_says_what_its_install_mounts(door):
    module = importlib.import_module(f"rock.admin.{door}")
    assert module.__doc__, f"rock.admin.{door} has no module docstring"
    assert module.install.__doc__, f"rock.admin.{door}.install has no docstring"
    assert list(inspect.signature(module.install).parameters) == ["app", "ctx"], \
        f"rock.admin.{door}.install must take (app, ctx) like every door (see rock.admin.app.DOORS)"


def test_the_app_installs_exactly_these_doors():
    from rock.admin.app import DOORS as INSTALLED

    assert [door.__name__.rsplit(".", 1)[1] for door in INSTALLED] == DOORS
