"""Two admins sharing one PostgreSQL store, through the unmodified e2b SDK (run inside its venv by
test_e2b_template_store.py): ``build`` builds a template on the first admin; ``use`` asks the second
for it (exists, tags, a sandbox of it), as another tenant too, and deletes it there."""

import os
import sys

from e2b import Sandbox, SandboxException, Template, TemplateException

IMAGE = os.environ["BASE_IMAGE"]
OTHER = os.environ["OTHER_KEY"]
NAME = os.environ["TEMPLATE_NAME"]


def build() -> None:
    template = Template().from_image(IMAGE).run_cmd(f"echo built-for-{NAME} > /opt/built.txt")
    info = Template.build(template, NAME, tags=["v1"])
    print(f"BUILT {info.template_id} {info.build_id}")


def use() -> None:
    assert Template.exists(NAME)
    tags = {t.tag for t in Template.get_tags(NAME)}
    assert tags == {"latest", "v1"}, tags
    sandbox = Sandbox.create(template=f"{NAME}:v1")
    try:
        out = sandbox.commands.run("cat /opt/built.txt").stdout
        assert out == f"built-for-{NAME}\n", out
    finally:
        sandbox.kill()
    # another tenant on this admin: missing, every way of asking
    assert not Template.exists(NAME, api_key=OTHER)
    try:
        Template.get_tags(NAME, api_key=OTHER)
    except TemplateException:
        pass
    else:
        raise AssertionError("another tenant read the tags")
    try:
        Sandbox.create(template=NAME, api_key=OTHER)
    except SandboxException as exc:
        assert "not found" in str(exc), exc
    else:
        raise AssertionError("another tenant started a sandbox of the template")
    assert Template.exists(NAME)  # the control: the owner still sees it after the other's attempts


{"build": build, "use": use}[sys.argv[1]]()
print("E2B TEMPLATE STORE OK")
