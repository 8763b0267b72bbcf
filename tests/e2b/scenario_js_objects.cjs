// The unmodified JavaScript SDK (`e2b`, from npm) against ROCK: a Template built from an image with
// a file copy and a RUN (build status and logs, exists, tags, delete), a Volume (create, list, get,
// content API, volumeMounts at create, seen inside the sandbox and in its info, destroy) and a Secret
// (create, update, list, destroy, named in a network.rules transform), all used by one sandbox;
// another tenant's key finds none of them. Configured as a user would (E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL,
// E2B_VOLUME_API_URL); OTHER_KEY is a second tenant's token, BASE_IMAGE an image the admin has,
// NAME a name of this run's own. Prints its OK line.
const fs = require('fs')
const os = require('os')
const path = require('path')
const { ApiClient, BuildError, ConnectionConfig, Sandbox, Secret, Template, Volume, VolumeNotFoundError } = require('e2b')

const OTHER = process.env.OTHER_KEY
const NAME = process.env.NAME
const other = { apiKey: OTHER }

function check(ok, what) {
  if (!ok) throw new Error('check failed: ' + what)
}

async function rejects(promise, what) {
  try {
    await promise
  } catch (e) {
    return e
  }
  throw new Error(what + ' did not fail')
}

async function deleteTemplate(templateId, opts = {}) {
  // the JS SDK has no Template.delete: its own API client calls E2B's route
  const api = new ApiClient(new ConnectionConfig(opts)).api
  const res = await api.DELETE('/templates/{templateID}', { params: { path: { templateID: templateId } } })
  return res.response.status
}

async function buildTemplate() {
  const context = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-'))
  fs.writeFileSync(path.join(context, 'hello.txt'), 'copied by the js template\n')
  const template = Template({ fileContextPath: context })
    .fromImage(process.env.BASE_IMAGE)
    .copy('hello.txt', '/opt/js/')
    .runCmd('echo built-' + NAME + ' && cat /opt/js/hello.txt > /opt/js/seen')
  const logs = []
  const info = await Template.build(template, NAME, { tags: ['v1'], onBuildLogs: (entry) => logs.push(String(entry)) })
  check(info.templateId && info.buildId, 'build info: ' + JSON.stringify(info))
  check(logs.some((l) => l.includes('built-' + NAME)), 'the RUN step\'s output in the build logs: ' + JSON.stringify(logs))
  const status = await Template.getBuildStatus({ templateId: info.templateId, buildId: info.buildId })
  check(status.status === 'ready' && status.logEntries.length > 0, 'build status: ' + JSON.stringify(status).slice(0, 500))
  const later = await Template.getBuildStatus({ templateId: info.templateId, buildId: info.buildId },
    { logsOffset: status.logEntries.length })
  check(later.logEntries.length === 0, 'no logs past the last offset: ' + JSON.stringify(later.logEntries))
  check(await Template.exists(NAME) && await Template.aliasExists(NAME), 'the template exists by name')
  const tags = (await Template.getTags(NAME)).map((t) => t.tag).sort()
  check(JSON.stringify(tags) === '["latest","v1"]', 'tags: ' + tags)
  const assigned = await Template.assignTags(NAME + ':v1', 'stable')
  check(assigned.buildId === info.buildId && JSON.stringify(assigned.tags) === '["stable"]', 'assigned: ' + JSON.stringify(assigned))
  await Template.removeTags(NAME, 'v1')
  const after = (await Template.getTags(NAME)).map((t) => t.tag).sort()
  check(JSON.stringify(after) === '["latest","stable"]', 'tags after removing v1: ' + after)
  // the templates the admin maps exist too; a failing step is a BuildError with its logs, and leaves no template
  check(await Template.exists('base') && (await Template.getTags('base')).map((t) => t.tag).join() === 'latest', 'base')
  const failedLogs = []
  const failed = await rejects(Template.build(Template().fromImage(process.env.BASE_IMAGE).runCmd('echo failing-' + NAME + ' && exit 3'),
    NAME + '-fails', { onBuildLogs: (entry) => failedLogs.push(String(entry)) }), 'a failing build')
  check(failed instanceof BuildError && /non-zero code: 3/.test(failed.message), 'the failure: ' + failed)
  check(failedLogs.some((l) => l.includes('failing-' + NAME)), 'the failing step\'s output: ' + JSON.stringify(failedLogs))
  check(!(await Template.exists(NAME + '-fails')), 'a failed build left a template')
  return info
}

async function main() {
  const made = { template: null, volume: null, secret: null, sandbox: null }
  try {
    made.template = await buildTemplate()

    made.volume = await Volume.create(NAME)
    const vol = made.volume
    check(vol.name === NAME && vol.volumeId && vol.token, 'volume: ' + vol.volumeId)
    check((await Volume.list()).some((v) => v.volumeId === vol.volumeId), 'listed')
    const info = await Volume.getInfo(vol.volumeId)
    check(info.name === NAME && info.token === vol.token, 'getInfo: ' + JSON.stringify(info))
    const written = await vol.writeFile('/seed/hello.txt', 'hi from the js api')
    check(written.type === 'file' && written.size === 'hi from the js api'.length, 'written: ' + JSON.stringify(written))
    check(await vol.readFile('/seed/hello.txt') === 'hi from the js api', 'read back')
    check(await vol.exists('/seed/hello.txt') && !(await vol.exists('/nope')), 'exists')
    await vol.makeDir('/made/deeper', { force: true })
    const names = (await vol.list('/')).map((e) => e.name).sort()
    check(JSON.stringify(names) === '["made","seed"]', 'listed entries: ' + names)
    const bytes = await vol.readFile('/seed/hello.txt', { format: 'bytes' })
    check(Buffer.from(bytes).toString() === 'hi from the js api', 'read as bytes')
    check((await vol.updateMetadata('/seed/hello.txt', { mode: 0o600 })).mode === 0o600, 'mode updated')
    check((await vol.getInfo('/seed/hello.txt')).mode === 0o600, 'stat after the update')
    await vol.remove('/made/deeper')
    check(!(await vol.exists('/made/deeper')) && await vol.exists('/made'), 'removed')

    made.secret = await Secret.create(NAME, 'the-secret-value')
    check(made.secret.name === NAME && made.secret.version === 1, 'secret: ' + JSON.stringify(made.secret))
    check((await Secret.list().nextItems()).some((s) => s.name === NAME), 'secret listed')
    check(await Secret.exists(NAME), 'secret exists')
    const updated = await Secret.update(NAME, 'the-secret-value-2')
    check(updated.version === 2 && (await Secret.getInfo(made.secret.secretId)).name === NAME, 'secret updated')

    // one sandbox of the template, with the volume mounted and a rule naming the secret
    const ref = Secret.fill(NAME)
    made.sandbox = await Sandbox.create(NAME, {
      timeoutMs: 300000,
      volumeMounts: { '/data': vol },
      network: { allowOut: ['bound.test'], denyOut: ['0.0.0.0/0'],
        rules: { 'bound.test': [{ transform: { headers: { Authorization: 'Bearer ' + ref } } }] } },
    })
    const sbx = made.sandbox
    // its info reports the mount and the rule (the secret as its reference, never its value)
    const details = await sbx.getInfo()
    check(JSON.stringify(details.volumeMounts) === JSON.stringify([{ name: NAME, path: '/data' }]),
      'volumeMounts in the info: ' + JSON.stringify(details.volumeMounts))
    const rule = ((details.network || {}).rules || {})['bound.test']
    check(rule && rule[0].transform.headers.Authorization === 'Bearer ' + ref && details.network.allowOut.includes('bound.test') &&
      details.network.denyOut.includes('0.0.0.0/0'), 'network in the info: ' + JSON.stringify(details.network))
    check(!JSON.stringify(details).includes('the-secret-value'), 'the secret\'s value is not in the info')
    const out = (await sbx.commands.run('cat /opt/js/seen /data/seed/hello.txt; echo; ls /data')).stdout
    check(out === 'copied by the js template\nhi from the js api\nmade\nseed\n', 'inside the sandbox: ' + JSON.stringify(out))
    await sbx.commands.run('echo from the js sandbox > /data/from-sbx.txt')
    const inUse = await rejects(Volume.destroy(vol.volumeId), 'destroying a mounted volume')
    check(/stop them first/.test(String(inUse)), 'a volume in use: ' + inUse)
    check(await vol.readFile('/from-sbx.txt') === 'from the js sandbox\n', 'the sandbox\'s write seen by the content API')
    const env = (await sbx.commands.run('env; cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n"')).stdout
    check(!env.includes('the-secret-value'), 'the secret\'s value is not in the sandbox')

    // another tenant: each object is a missing one
    check(!(await Template.exists(NAME, other)), 'another tenant sees the template')
    check(await deleteTemplate(made.template.templateId, other) === 404, 'another tenant deletes the template')
    check(await rejects(Template.getTags(NAME, other), 'another tenant\'s getTags'), 'another tenant gets the tags')
    const missing = await rejects(Volume.getInfo(vol.volumeId, other), 'another tenant\'s getInfo')
    check(missing instanceof VolumeNotFoundError, 'another tenant\'s volume: ' + missing)
    check(!(await Volume.list(other)).some((v) => v.volumeId === vol.volumeId), 'another tenant lists the volume')
    check(await Volume.destroy(vol.volumeId, other) === false, 'another tenant destroys the volume')
    check(!(await Secret.exists(NAME, other)) && await Secret.destroy(NAME, other) === false, 'another tenant\'s secret')
    const mount = await rejects(Sandbox.create('base', { ...other, volumeMounts: { '/data': NAME } }), 'another tenant\'s mount')
    check(/not found/.test(String(mount)), 'another tenant mounts the volume: ' + mount)
    check(await Template.exists(NAME) && await Secret.exists(NAME), 'still there for their owner')

    await sbx.kill()
    made.sandbox = null
    check(await deleteTemplate(made.template.templateId) === 204, 'template deleted')
    made.template = null
    check(!(await Template.exists(NAME)), 'a deleted template does not exist')
    check(await Volume.destroy(vol.volumeId) === true, 'volume destroyed')
    made.volume = null
    check(!(await Volume.list()).some((v) => v.name === NAME), 'a destroyed volume is not listed')
    check(await Secret.destroy(NAME) === true && !(await Secret.exists(NAME)), 'secret destroyed')
    made.secret = null
  } finally {
    const quiet = (p) => p.catch(() => undefined)
    if (made.sandbox) await quiet(made.sandbox.kill())
    if (made.template) await quiet(deleteTemplate(made.template.templateId))
    if (made.volume) await quiet(Volume.destroy(made.volume.volumeId))
    if (made.secret) await quiet(Secret.destroy(NAME))
  }
  console.log('E2B JS OBJECTS OK')
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e)
  process.exit(1)
})
