"""E2B's Template API through the unmodified e2b SDK (run inside its venv by test_e2b_templates.py):
a build from steps (RUN, COPY, ENV, WORKDIR, USER) used by Sandbox.create; exists, tags, aliases,
delete; a failing RUN; a RUN that reaches for the network; another tenant; unserved routes."""

import os
import tempfile
from pathlib import Path

from e2b import BuildException, Sandbox, SandboxException, Secret, Template, TemplateException, Volume, wait_for_file
from e2b.api.client.api.templates import delete_templates_template_id
from e2b.api.client_sync import get_api_client
from e2b.connection_config import ConnectionConfig

IMAGE = os.environ["BASE_IMAGE"]
OTHER = os.environ["OTHER_KEY"]
NAME = os.environ["TEMPLATE_NAME"]
HOST, PORT = os.environ["PROBE_HOST"], os.environ["PROBE_PORT"]


def expect(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError(f"{fn.__name__} did not raise {exc_type.__name__}")


def build_and_use() -> None:
    context = Path(tempfile.mkdtemp())
    (context / "hello.txt").write_text("copied by the template\n")
    (context / "tool.sh").write_text("#!/bin/sh\necho tool ran\n")
    template = (Template(file_context_path=str(context))
                .from_image(IMAGE)
                .set_envs({"GREETING": "hi from ENV"})
                .set_workdir("/opt/app")
                .run_cmd("pwd > /opt/app/where && echo built > /opt/app/built.txt")
                .copy("hello.txt", "/opt/app/")
                .copy("tool.sh", "/usr/local/bin/tool", mode=0o755)
                .set_user("nobody")
                .run_cmd("id -un > /tmp/ran-as")
                .set_user("root")
                .run_cmd("cat /opt/app/hello.txt > /opt/app/copy-seen"))
    logs = []
    info = Template.build(template, NAME, tags=["v1"], on_build_logs=logs.append, cpu_count=1, memory_mb=768)
    assert info.template_id and info.build_id, info
    assert any("RUN" in str(entry) for entry in logs), [str(e) for e in logs]
    assert Template.exists(NAME)
    tags = {t.tag for t in Template.get_tags(NAME)}
    assert tags == {"latest", "v1"}, tags

    sandbox = Sandbox.create(template=NAME)
    try:
        out = sandbox.commands.run("cat /opt/app/where /opt/app/built.txt /opt/app/copy-seen /tmp/ran-as; "
                                   "echo \"$GREETING\"; tool").stdout
        assert out.split("\n")[:6] == ["/opt/app", "built", "copied by the template", "nobody", "hi from ENV",
                                       "tool ran"], out
        details = sandbox.get_info()  # the template's resources are the sandbox's
        assert (details.cpu_count, details.memory_mb) == (1, 768), details
    finally:
        sandbox.kill()
    sandbox = Sandbox.create(template=f"{NAME}:v1")  # a tag names the build too
    sandbox.kill()
    sandbox = Sandbox.create(template=f"{NAME}:{info.build_id}")  # and so does the build's id (Harbor's way)
    sandbox.kill()
    error = expect(SandboxException, Sandbox.create, template=f"{NAME}:no-such-tag")
    assert f"tag 'no-such-tag' does not exist for template '{NAME}'" in str(error), error

    # tags: assigned to a build, removed
    assigned = Template.assign_tags(f"{NAME}:v1", "stable")
    assert assigned.build_id == info.build_id and assigned.tags == ["stable"], assigned
    Template.remove_tags(NAME, ["v1"])
    assert {t.tag for t in Template.get_tags(NAME)} == {"latest", "stable"}

    # another tenant: every way of asking says missing
    assert not Template.exists(NAME, api_key=OTHER)
    expect(TemplateException, Template.get_tags, NAME, api_key=OTHER)
    assert "not found" in str(expect(SandboxException, Sandbox.create, template=NAME, api_key=OTHER))
    response = delete_templates_template_id.sync_detailed(info.template_id,
                                                          client=get_api_client(ConnectionConfig(api_key=OTHER)))
    assert response.status_code == 404, response
    assert Template.exists(NAME)

    # fromTemplate: a template built on this one; its startCmd runs in each sandbox, ready when its readyCmd is
    child = (Template().from_template(NAME).run_cmd("cat /opt/app/built.txt > /opt/app/child")
             .set_start_cmd("sleep 1; echo started > /tmp/started; sleep 600", wait_for_file("/tmp/started")))
    Template.build(child, f"{NAME}-child")
    sandbox = Sandbox.create(template=f"{NAME}-child")
    try:
        assert sandbox.commands.run("cat /opt/app/child /tmp/started").stdout == "built\nstarted\n"
    finally:
        sandbox.kill()

    client = get_api_client(ConnectionConfig())
    for name in (f"{NAME}-child", NAME):
        template_id = info.template_id if name == NAME else name
        response = delete_templates_template_id.sync_detailed(template_id, client=client)
        assert response.status_code == 204, response
        assert not Template.exists(name)
    assert "not found" in str(expect(SandboxException, Sandbox.create, template=NAME))


def failures() -> None:
    logs = []
    failing = Template().from_image(IMAGE).run_cmd(f"echo before-the-failure-{NAME} && exit 3")
    error = expect(BuildException, Template.build, failing, f"{NAME}-fails", on_build_logs=logs.append)
    assert "returned a non-zero code: 3" in str(error), error
    assert any(f"before-the-failure-{NAME}" in str(e) for e in logs), [str(e) for e in logs]
    assert not Template.exists(f"{NAME}-fails")

    # build steps have no network (as image builds): the attempt runs and is refused
    script = (f"import socket; print('reaching-out-{NAME}', flush=True); "
              f"socket.create_connection(('{HOST}', {PORT}), timeout=5); print('reached')")
    reaching = Template().from_image(IMAGE).run_cmd(f"python3 -c \"{script}\"")
    logs = []
    error = expect(BuildException, Template.build, reaching, f"{NAME}-net", on_build_logs=logs.append)
    text = "\n".join(str(e) for e in logs)
    assert "reaching-out" in text and "reached\n" not in text, text
    assert "unreachable" in text.lower() or "network" in text.lower(), text
    assert not Template.exists(f"{NAME}-net")


def unserved() -> None:
    # missing objects answer in E2B's shape: the SDK's own exceptions, never KeyError
    assert Template.exists("base")
    assert [t.tag for t in Template.get_tags("base")] == ["latest"]
    error = expect(Exception, Secret.get_info, "no-such-secret")
    assert type(error).__name__ == "SecretNotFoundException", repr(error)
    # secrets are served (tests/security/scenario_e2b_secrets.py has the rest): one made and destroyed
    Secret.create(f"{NAME}-secret", "value")
    assert Secret.exists(f"{NAME}-secret") and Secret.destroy(f"{NAME}-secret") is True
    error = expect(Exception, Volume.get_info, "no-such-volume")
    assert "NotFound" in type(error).__name__ or "404" in str(error), repr(error)


build_and_use()
failures()
unserved()
print("E2B TEMPLATES OK")
